"""Operations artefacts generated from code (Grafana dashboards); never imported by a worker."""
