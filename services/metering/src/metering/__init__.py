"""Metering: usage events from customer environments become exact, deduplicated monthly usage."""
