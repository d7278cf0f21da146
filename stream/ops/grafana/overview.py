"""The "Engagement overview" dashboard: the business metrics of the current windows (every
worker exports the same global view, read from Redis: ``max`` across workers)."""

from __future__ import annotations

from stream.ops.grafana.panels import (
    RATE,
    Dashboard,
    Panel,
    Row,
    Target,
    Variable,
    business,
    labels_of,
    stat,
    top,
)

__all__ = ["OVERVIEW"]

W = 'window="$window"'
SW = 'window="$session_window"'


def ticket_medians(title: str, hours: str, description: str) -> Panel:
    """Median first reply, first and full resolution time; ``hours``: "" or "_business"."""
    return Panel(
        title,
        tuple(
            Target(
                "histogram_quantile(0.5, max by (le) "
                f"(engagement_ticket_{m}{hours}_seconds_bucket{{{SW}}}))",
                legend,
            )
            for m, legend in (
                ("first_reply", "first reply"),
                ("first_resolution", "first resolution"),
                ("full_resolution", "full resolution"),
            )
        ),
        unit="s",
        description=description,
    )


CAMPAIGN = f'{W}, campaign=~"$campaign"'

OVERVIEW = Dashboard(
    uid="engagement-overview",
    title="Engagement overview",
    description="Business metrics of the current windows, read from Redis by every worker "
    "(max across workers). History: the HTTP API.",
    variables=(
        Variable("window", "Window", values=("minute", "hour", "day"), default="day"),
        # No minute: with the defaults, facts settled on the watermark (sessions, tickets,
        # customers) reach their minute windows after those expired (docs/metrics.md#retention).
        Variable(
            "session_window",
            "Settled window (sessions, tickets)",
            values=("hour", "day", "previous_day"),
            default="previous_day",
        ),
        labels_of("engagement_impressions", "campaign"),
        labels_of("engagement_page_views_by_page", "page"),
        labels_of("engagement_feature_users", "feature"),
        labels_of("engagement_sessions_by_platform", "platform"),
        labels_of("engagement_sessions_by_channel", "channel"),
    ),
    rows=(
        Row(
            "Active users",
            (
                stat("DAU", "max(engagement_dau)", description="Active users today (HLL)."),
                stat("WAU", "max(engagement_wau)", description="7 days to today (HLL)."),
                stat("MAU", "max(engagement_mau)", description="30 days to today (HLL)."),
                stat("Stickiness (DAU / MAU)", "max(engagement_stickiness_ratio)", "percentunit"),
                business(
                    "Active users, current $window",
                    f"max(engagement_active_users{{{W}}})",
                    "active users",
                ),
                business(
                    "Events by type, current $window",
                    f"max by (type) (engagement_events{{{W}}})",
                    "{{type}}",
                ),
                business(
                    "Page views by page, current $window",
                    f'max by (page) (engagement_page_views_by_page{{{W}, page=~"$page"}})',
                    "{{page}}",
                ),
            ),
        ),
        Row(
            "Campaigns and conversions",
            (
                business(
                    "Impressions, current $window",
                    top("engagement_impressions", CAMPAIGN, "campaign, placement"),
                    "{{campaign}} / {{placement}}",
                ),
                business(
                    "Clicks, current $window",
                    top("engagement_clicks", CAMPAIGN, "campaign, placement"),
                    "{{campaign}} / {{placement}}",
                ),
                business(
                    "CTR, current $window",
                    top("engagement_ctr_ratio", CAMPAIGN, "campaign, placement"),
                    "{{campaign}} / {{placement}}",
                    unit="percentunit",
                ),
                business(
                    "Orphan clicks (no impression), today",
                    top("engagement_orphan_clicks", 'campaign=~"$campaign"', "campaign, placement"),
                    "{{campaign}} / {{placement}}",
                ),
                Panel(
                    "Conversions and page views, current $window",
                    (
                        Target(f"max(engagement_conversions{{{W}}})", "conversions"),
                        Target(f"max(engagement_page_views{{{W}}})", "page views"),
                    ),
                ),
                business(
                    "Visitor conversion today (users converted / active users)",
                    "max(engagement_user_conversion_ratio)",
                    "users converted / active",
                    unit="percentunit",
                ),
            ),
        ),
        Row(
            "Feature adoption",
            (
                business(
                    "Feature events, current $window",
                    f'max by (feature) (engagement_feature_events{{{W}, feature=~"$feature"}})',
                    "{{feature}}",
                ),
                business(
                    "Feature users today",
                    'max by (feature) (engagement_feature_users{feature=~"$feature"})',
                    "{{feature}}",
                ),
                business(
                    "Feature adoption (users / DAU)",
                    'max by (feature) (engagement_feature_adoption_ratio{feature=~"$feature"})',
                    "{{feature}}",
                    unit="percentunit",
                ),
            ),
        ),
        Row(
            "Sessions (closed sessions, by window of their first event)",
            (
                business("Sessions", f"max(engagement_sessions{{{SW}}})", "sessions"),
                Panel(
                    "Session duration",
                    (
                        Target(
                            f"max(engagement_session_duration_avg_seconds{{{SW}}})",
                            "mean",
                        ),
                        Target(
                            "histogram_quantile(0.5, max by (le) "
                            f"(engagement_session_duration_seconds_bucket{{{SW}}}))",
                            "median (bucket estimate)",
                        ),
                    ),
                    unit="s",
                    description="Gauge histogram: no rate(); max across workers.",
                ),
                Panel(
                    "Engagement, bounce and conversion rate",
                    (
                        Target(f"max(engagement_session_engagement_ratio{{{SW}}})", "engaged"),
                        Target(f"max(engagement_session_bounce_ratio{{{SW}}})", "bounced"),
                        Target(f"max(engagement_session_conversion_ratio{{{SW}}})", "converted"),
                    ),
                    unit="percentunit",
                ),
                business(
                    "Pages per session",
                    f"max(engagement_pages_per_session{{{SW}}})",
                    "pages / session",
                ),
                business(
                    "Sessions by platform",
                    top(
                        "engagement_sessions_by_platform",
                        f'{SW}, platform=~"$platform"',
                        "platform",
                    ),
                    "{{platform}}",
                ),
                business(
                    "Sessions by channel",
                    top("engagement_sessions_by_channel", f'{SW}, channel=~"$channel"', "channel"),
                    "{{channel}}",
                ),
            ),
        ),
        Row(
            "Surveys (NPS, CSAT, CES)",
            (
                business("NPS, current $window", f"max(engagement_nps{{{W}}})", "NPS"),
                business(
                    "CSAT (top-2 box), current $window",
                    f"max(engagement_csat_ratio{{{W}}})",
                    "CSAT",
                    unit="percentunit",
                ),
                business("CES (mean, 1–7), current $window", f"max(engagement_ces_score{{{W}}})"),
                business(
                    "CES agree (5–7), current $window",
                    f"max(engagement_ces_agree_ratio{{{W}}})",
                    "agree",
                    unit="percentunit",
                ),
                business(
                    "Survey responses, current $window",
                    f"max by (survey) (engagement_survey_responses{{{W}}})",
                    "{{survey}}",
                    description="Hide a score computed from too few answers.",
                ),
            ),
        ),
        Row(
            "Social",
            (
                business(
                    "Social actions, current $window",
                    f"max by (action) (engagement_social_actions{{{W}}})",
                    "{{action}}",
                ),
                business(
                    "Social engagement rate, current $window",
                    f"max by (platform) (engagement_social_engagement_ratio{{{W}}})",
                    "{{platform}}",
                    unit="percentunit",
                ),
                business(
                    "Followers",
                    "max by (platform) (engagement_social_followers)",
                    "{{platform}}",
                ),
            ),
        ),
        Row(
            "Support (settled on the watermark)",
            (
                Panel(
                    "Tickets",
                    (
                        Target(f"max(engagement_tickets_created{{{SW}}})", "created"),
                        Target(f"max(engagement_tickets_solved{{{SW}}})", "solved"),
                        Target(f"max(engagement_ticket_reopens{{{SW}}})", "reopens"),
                    ),
                ),
                stat("Backlog (open now)", "max(engagement_ticket_backlog)"),
                ticket_medians(
                    "First reply and resolution time (median)",
                    "",
                    "Gauge histograms (calendar hours): no rate(); max across workers.",
                ),
                ticket_medians(
                    "First reply and resolution time, business hours (median)",
                    "_business",
                    "Only with support_business_hours enabled (docs/configuration.md). Gauge "
                    "histograms: no rate(); max across workers.",
                ),
            ),
        ),
        Row(
            "Accounts",
            (
                business(
                    "Subscription events, current $window",
                    f"max by (event) (engagement_subscription_events{{{W}}})",
                    "{{event}}",
                ),
                business("Revenue, current $window", f"max(engagement_revenue{{{W}}})", "revenue"),
                business(
                    "Average order value, current $window",
                    f"max(engagement_avg_order_value{{{W}}})",
                    "average order",
                    description="Purchase revenue / purchases (subscription payments excluded).",
                ),
                business("Customers", f"max(engagement_customers{{{W}}})", "customers"),
                Panel(
                    "Customer value, current month",
                    (
                        Target('max(engagement_arpu{window="month"})', "ARPU"),
                        Target('max(engagement_predicted_clv{window="month"})', "predicted CLV"),
                    ),
                    description="ARPU: revenue / active users. Predicted CLV: ARPU × "
                    "gross_margin / churn rate of the month (no value without churn).",
                ),
                Panel(
                    "Purchases per buyer and repeat buyers, current month",
                    (
                        Target(
                            'max(engagement_purchase_frequency{window="month"})',
                            "purchases per buyer",
                        ),
                        Target(
                            'max(engagement_repeat_purchase_ratio{window="month"})',
                            "repeat buyers (share)",
                        ),
                    ),
                ),
                Panel(
                    "Churn and retention, current $window",
                    (
                        Target(f"max(engagement_churn_ratio{{{W}}})", "churn"),
                        Target(f"max(engagement_retention_ratio{{{W}}})", "retention"),
                    ),
                    unit="percentunit",
                ),
            ),
        ),
        Row(
            "Engagement score and churn risk",
            (
                business(
                    "Customers per engagement band",
                    "max by (band) (engagement_score_band_customers)",
                    "{{band}}",
                    description="0–40 at risk, 41–75 engaged, 76–100 highly engaged.",
                ),
                Panel(
                    "Engagement score distribution (median, p10)",
                    (
                        Target(
                            "histogram_quantile(0.5, max by (le) "
                            "(engagement_customer_score_bucket))",
                            "median",
                        ),
                        Target(
                            "histogram_quantile(0.1, max by (le) "
                            "(engagement_customer_score_bucket))",
                            "p10",
                        ),
                    ),
                    description="Gauge histogram of current scores: no rate(); max across workers.",
                ),
                Panel(
                    "Churn-risk transitions per hour",
                    (
                        Target(
                            f"sum by (reason) (rate(stream_churn_risk_transitions_total{RATE})) "
                            "* 3600",
                            "{{reason}}",
                        ),
                    ),
                    description="Published to the churn-risk topic exactly once (summed across "
                    "workers: each publishes its own partitions' transitions).",
                ),
                Panel(
                    "Score inputs relayed from other families",
                    (
                        Target(
                            f"sum by (family) (rate(stream_relay_published_total{RATE}))",
                            "published from {{family}}",
                        ),
                        Target(
                            f"sum by (outcome) (rate(stream_relay_received_total{RATE}))",
                            "received: {{outcome}}",
                        ),
                    ),
                    unit="ops",
                    description="Social, support, feedback and account events relayed into the "
                    "clickstream topic for customer scores. duplicate / out_of_order: re-sends "
                    "after a crash or a failed send, dropped (applied once).",
                ),
            ),
        ),
    ),
)
