// A real OpenID Connect provider for the SSO tests: panva's `oidc-provider` (npm), OpenID
// Certified, with its development login and consent pages (any login name, any password).
// Configuration comes from the environment (see tests/oidc_provider.py):
//   OIDC_MODULE (file URL of the installed package's lib/index.js), OIDC_PORT, OIDC_ISSUER,
//   OIDC_CLIENTS (JSON list of client metadata), OIDC_ID_TOKEN_TTL (seconds)
// The login name is the account and its subject: "alice@acme.example" has that email,
// verified; "unverified-carol@acme.example" has carol@acme.example, not verified; and
// "other|alice@acme.example" is another subject asserting alice@acme.example.
const { default: Provider } = await import(process.env.OIDC_MODULE);

const port = Number(process.env.OIDC_PORT);
const issuer = process.env.OIDC_ISSUER;
const clients = JSON.parse(process.env.OIDC_CLIENTS);
const idTokenTtl = Number(process.env.OIDC_ID_TOKEN_TTL || '600');

const provider = new Provider(issuer, {
  clients,
  cookies: { keys: ['storefront-test-cookie-key'] },
  claims: { openid: ['sub'], email: ['email', 'email_verified'] },
  // The email claims go into the ID token (the relying party reads no userinfo).
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  ttl: { IdToken: idTokenTtl },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        const unverified = id.startsWith('unverified-');
        const address = id.includes('|') ? id.slice(id.indexOf('|') + 1) : id;
        const email = unverified ? address.slice('unverified-'.length) : address;
        return { sub: id, email, email_verified: !unverified };
      },
    };
  },
});
provider.listen(port, '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});
