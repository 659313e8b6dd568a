"""ps_agent.dmp"""
