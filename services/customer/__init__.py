"""Customer service: identities and tokens, device clients, profiles, consent ledger, GDPR."""
