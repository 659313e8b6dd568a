"""ps-agent core: card, authentication, DMP client, access policy, audit. No Qt, never imports sandbox."""
