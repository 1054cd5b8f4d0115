/**
 * The registry of auth mechanics: one `MechanicDefinition` per `auth.type`.
 *
 * Adding a mechanic is a new module plus one line in `DEFINITIONS`; the proxy pipeline and
 * the config loader find it through `MECHANICS` and `registerMechanicSchemas()`.
 */
import { registerMechanicSchema, type MechanicSchema } from '../config/auth-schemas.js';
import { awsSigV4Mechanic } from './aws-sigv4.js';
import { basicMechanic } from './basic.js';
import { bearerMechanic } from './bearer.js';
import { githubAppMechanic } from './github-app.js';
import { headerMechanic } from './header.js';
import { hmacMechanic } from './hmac.js';
import { jwtBearerMechanic } from './jwt-bearer.js';
import type { MechanicDefinition } from './mechanic.js';
import { mtlsMechanic } from './mtls.js';
import { noneMechanic } from './none.js';
import { oauth2AuthorizationCodeMechanic } from './oauth2-authorization-code.js';
import { oauth2ClientCredentialsMechanic } from './oauth2-client-credentials.js';
import { queryMechanic } from './query.js';
import { tokenExchangeMechanic } from './token-exchange.js';

/**
 * Options are checked by each definition's own schema before `create` sees them, so the
 * registry can hold definitions with their option types erased.
 */
const erase = <O>(definition: MechanicDefinition<O>): MechanicDefinition =>
  definition as unknown as MechanicDefinition;

const DEFINITIONS: readonly MechanicDefinition[] = [
  erase(noneMechanic),
  erase(headerMechanic),
  erase(bearerMechanic),
  erase(basicMechanic),
  erase(queryMechanic),
  erase(awsSigV4Mechanic),
  erase(hmacMechanic),
  erase(oauth2ClientCredentialsMechanic),
  erase(oauth2AuthorizationCodeMechanic),
  erase(jwtBearerMechanic),
  erase(githubAppMechanic),
  erase(tokenExchangeMechanic),
  erase(mtlsMechanic),
];

/**
 * Every built-in mechanic by `auth.type`.
 *
 * @example
 * const def = MECHANICS.get(service.auth.type);
 * const mechanic = def.create(service.name, def.optionsSchema.parse(options), { clock });
 */
export const MECHANICS: ReadonlyMap<string, MechanicDefinition> = new Map(
  DEFINITIONS.map((d) => [d.type, d]),
);

/**
 * Registers each mechanic's `optionsSchema` with the config loader, so `nexus.yaml` `auth`
 * blocks are validated by the same schema the mechanic is created from. Call once at start-up
 * before the config is parsed. Idempotent.
 */
export function registerMechanicSchemas(
  register: (type: string, schema: MechanicSchema) => void = registerMechanicSchema,
): void {
  for (const [type, def] of MECHANICS) register(type, def.optionsSchema as MechanicSchema);
}
