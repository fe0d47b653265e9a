"""The agents' wire contract, shared by the agent (which serves it) and everything that
calls an agent (the operator, peer agents, the lab, the tests and benchmarks):

- models.py: every request and answer of the agent's HTTP API;
- services.py: what a repository runs (part of a create request, kept in the repository);
- errors.py: how a call fails (AgentUnreachable, AgentRefused; both AgentError);
- client.py: AgentClient, which speaks it over mTLS.
"""
