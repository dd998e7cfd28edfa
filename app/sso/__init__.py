"""Single sign-on for tenant staff: OpenID Connect, one provider per tenant (authlib)."""
