"""The field technicians' swap queue in the controller (issue 11): the adapters around :mod:`controller.swapqueue`.

:class:`~controller.fieldwork.service.FieldService` feeds the work-order book from alert announcements and
telemetry on its own thread, stores every change (:mod:`controller.store.fieldwork`), writes ``work_order`` points
and plans each technician's day (:mod:`controller.fieldwork.plans`); ``controller.api.field`` serves the technicians'
API and the page at ``/field`` (``controller/fieldwork/static/``).
"""
