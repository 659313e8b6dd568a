"""ps_agent.outbox"""
