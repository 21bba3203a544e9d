"""A CloudWatch dashboard plus alarms that notify one SNS topic; every stack can own one."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_sns as sns
from constructs import Construct


class OpsDashboard(Construct):
    """Sections of graphs and alarms on one dashboard; alarms and recoveries go to `alarm_topic`.

    Later stacks (collectors, training, serving) create their own `OpsDashboard` with the monitoring
    stack's `alarm_topic`, so that no stack has to reach into another one's dashboard.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        alarm_topic: sns.ITopic,
        dashboard_name: str | None = None,
        default_interval: Duration | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.alarm_topic = alarm_topic
        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=dashboard_name,
            default_interval=default_interval or Duration.days(7),
        )
        self.alarms: list[cloudwatch.Alarm] = []
        self._action = cloudwatch_actions.SnsAction(alarm_topic)

    def add_section(self, title: str, *widgets: cloudwatch.IWidget) -> None:
        """Add a titled row of widgets."""
        self.dashboard.add_widgets(cloudwatch.TextWidget(markdown=f"## {title}", width=24, height=1))
        self.dashboard.add_widgets(*widgets)

    @staticmethod
    def graph(
        title: str,
        metrics: Sequence[cloudwatch.IMetric],
        *,
        width: int = 8,
        unit_label: str | None = None,
        thresholds: Sequence[cloudwatch.Alarm] = (),
    ) -> cloudwatch.GraphWidget:
        """A line graph, with the thresholds of `thresholds` drawn as horizontal annotations."""
        return cloudwatch.GraphWidget(
            title=title,
            left=list(metrics),
            width=width,
            height=6,
            left_y_axis=cloudwatch.YAxisProps(label=unit_label, show_units=unit_label is None, min=0),
            left_annotations=[alarm.to_annotation() for alarm in thresholds],
        )

    def add_alarm(
        self,
        construct_id: str,
        *,
        metric: cloudwatch.IMetric,
        threshold: float,
        comparison_operator: cloudwatch.ComparisonOperator,
        description: str,
        evaluation_periods: int = 3,
        datapoints_to_alarm: int | None = None,
        treat_missing_data: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.MISSING,
    ) -> cloudwatch.Alarm:
        """Create an alarm whose ALARM and OK transitions publish to the alarm topic."""
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison_operator,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=datapoints_to_alarm,
            treat_missing_data=treat_missing_data,
            alarm_description=description,
        )
        alarm.add_alarm_action(self._action)
        alarm.add_ok_action(self._action)
        self.alarms.append(alarm)
        return alarm

    def add_event_alarm(
        self,
        construct_id: str,
        *,
        metric: cloudwatch.IMetric,
        description: str,
        threshold: float = 1,
        evaluation_periods: int = 1,
        datapoints_to_alarm: int | None = None,
    ) -> cloudwatch.Alarm:
        """An alarm on a count of bad events (errors, failures, messages in a DLQ): ALARM once the count
        reaches ``threshold``; no data means no events, so it is not breaching."""
        return self.add_alarm(
            construct_id,
            metric=metric,
            threshold=threshold,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            description=description,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=datapoints_to_alarm,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

    def add_alarm_status(self, title: str = "Alarms") -> None:
        """Add a row showing the state of every alarm created so far."""
        if self.alarms:
            self.dashboard.add_widgets(
                cloudwatch.AlarmStatusWidget(title=title, alarms=list(self.alarms), width=24, height=3)
            )
