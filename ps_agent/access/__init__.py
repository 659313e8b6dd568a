"""ps_agent.access"""
