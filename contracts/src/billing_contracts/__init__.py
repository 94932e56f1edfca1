"""Versioned wire contracts of every event and command this product consumes or publishes."""

from billing_contracts.base import Message
from billing_contracts.registry import TOPICS, TopicSpec, topic_for

__all__ = ["TOPICS", "Message", "TopicSpec", "topic_for"]
