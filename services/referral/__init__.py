"""Referral: share codes and invitation cards, attribution, commission, red packets,
withdrawals. Publishes referral.events; consumes room.events and order.events."""
