"""Pub/Sub function `erp_export`: will turn ledger events into ERP journal batches.

For now it decodes the Pub/Sub message and acknowledges it. The ledger publishes its
events to the topic (common/relay.py); the cost-revenue mapping and delivery to the
ERP come with the ERP export issue.
"""

import base64
import json
import logging

import functions_framework

log = logging.getLogger("ledger.erp_export")


@functions_framework.cloud_event
def erp_export(cloud_event):
    message = (cloud_event.data or {}).get("message", {})
    try:
        event = json.loads(base64.b64decode(message.get("data", "")) or b"{}")
    except ValueError:
        # A malformed message will never parse: acknowledge it rather than retry forever.
        log.error("dropping malformed ledger event", extra={"message_id": message.get("messageId")})
        return
    log.info("ledger event received", extra={"message_id": message.get("messageId"), "type": event.get("action")})
