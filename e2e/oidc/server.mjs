// A real OpenID Connect provider for the identity e2e tests: panva's `oidc-provider`
// (npm, certified by the OpenID Foundation), installed by scripts/install-deps.sh under
// ~/.cache/connectors-e2e. One confidential client with client_secret_basic and
// client_secret_post, so a wrong secret is refused at the token endpoint
// (`invalid_client`) while a valid client with a bogus code gets `invalid_grant`.
//
// Environment: OIDC_PROVIDER_DIR (the npm prefix), PORT, ISSUER, CLIENT_ID,
// CLIENT_SECRET, REDIRECT_URI. Listens on 127.0.0.1 only.
import { pathToFileURL } from 'node:url';
import path from 'node:path';

const env = (name) => {
  const value = process.env[name];
  if (!value) {
    console.error(`missing ${name}`);
    process.exit(2);
  }
  return value;
};

const moduleFile = path.join(env('OIDC_PROVIDER_DIR'), 'node_modules/oidc-provider/lib/index.js');
const { default: Provider } = await import(pathToFileURL(moduleFile).href);

const provider = new Provider(env('ISSUER'), {
  clients: [{
    client_id: env('CLIENT_ID'),
    client_secret: env('CLIENT_SECRET'),
    redirect_uris: [env('REDIRECT_URI')],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
  pkce: { required: () => false },
});
provider.proxy = false;
const server = provider.listen(Number(env('PORT')), '127.0.0.1', () => {
  console.log(`oidc-provider listening on 127.0.0.1:${env('PORT')} as ${env('ISSUER')}`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
