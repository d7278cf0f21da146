"""``python -m stream.ops.grafana``: write the dashboards (``--check``: fail if stale)."""

from stream.ops.grafana import main

raise SystemExit(main())
