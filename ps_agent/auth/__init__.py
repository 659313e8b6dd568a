"""ps_agent.auth"""
