"""Notifications: the event log (registry/model/events.py) delivered to webhook endpoints."""
