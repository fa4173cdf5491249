"""The controller's alert adapters around the pure engine of :mod:`controller.alerts` (issue 11).

:class:`~controller.alerting.service.AlertService` feeds the monitor from a queue on one thread, ticks it on a timer
and stores state and announcements together (:mod:`controller.store.alerts`);
:class:`~controller.alerting.publisher.AlertPublisher` puts stored announcements on the MQTT alert channel and into
InfluxDB; operator webhooks go through the courier webhooks' signed retry queue.
"""
