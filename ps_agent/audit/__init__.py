"""ps_agent.audit"""
