"""Outbound: the durable outbox, the scheduler that decides what is due, and the SMTP delivery agent."""
