"""ps_agent.card"""
