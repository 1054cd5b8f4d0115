/**
 * The Authority's signing keys: creation, rotation and the JWKS.
 *
 * MUST: private keys are stored only sealed by the vault (a stolen database cannot mint
 * leases). MUST: a retired key stays in the JWKS and keeps verifying until the last lease
 * it signed has expired (`verifyUntil`), so rotation never cuts off a live agent.
 */
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
} from 'node:crypto';
import type { JWK } from 'jose';
import { NexusError } from '@nexus-proxy/protocol';
import type { Store, SigningKeyRow } from '../store/store.js';
import type { Vault } from '../vault/vault.js';

export type AuthorityAlg = 'EdDSA' | 'ES256';

export interface LoadedKey {
  readonly kid: string;
  readonly alg: AuthorityAlg;
  readonly publicJwk: JWK;
  readonly publicKey: KeyObject;
  readonly privateKey: KeyObject | undefined;
  readonly status: 'active' | 'retired';
  readonly verifyUntil: number | undefined;
  readonly createdAt: number;
}

function generate(alg: AuthorityAlg): { publicKey: KeyObject; privateKey: KeyObject } {
  return alg === 'EdDSA'
    ? generateKeyPairSync('ed25519')
    : generateKeyPairSync('ec', { namedCurve: 'P-256' });
}

export class SigningKeys {
  #keys = new Map<string, LoadedKey>();
  #active: LoadedKey | undefined;

  constructor(
    private readonly store: Store,
    private readonly vault: Vault,
    private readonly clock: () => number,
  ) {}

  /** Loads every key still able to verify; creates the first key when there is none. */
  async init(alg: AuthorityAlg): Promise<void> {
    const rows = await this.store.listSigningKeys();
    this.#keys.clear();
    this.#active = undefined;
    for (const row of rows) {
      const key = await this.#load(row);
      this.#keys.set(key.kid, key);
      if (key.status === 'active') this.#active = key;
    }
    if (this.#active === undefined) await this.rotate(alg, 0);
  }

  /**
   * Re-reads the keys another node of a cluster may have rotated (issue 13): new keys are
   * loaded, retired ones lose their private key, and the newest active key signs from
   * now on. Never rotates.
   */
  async refresh(): Promise<void> {
    const rows = await this.store.listSigningKeys();
    const keys = new Map<string, LoadedKey>();
    let active: LoadedKey | undefined;
    for (const row of rows) {
      const known = this.#keys.get(row.kid);
      const key =
        known !== undefined && known.status === row.status && known.verifyUntil === row.verifyUntil
          ? known
          : row.status === 'retired' && known !== undefined
            ? { ...known, status: row.status, privateKey: undefined, verifyUntil: row.verifyUntil }
            : await this.#load(row);
      keys.set(key.kid, key);
      if (key.status === 'active') active = key;
    }
    // A rotation of this node's own that raced the read wins.
    for (const [kid, key] of this.#keys) if (!keys.has(kid)) keys.set(kid, key);
    this.#keys = keys;
    if (
      active !== undefined &&
      (this.#active === undefined || active.createdAt >= this.#active.createdAt)
    ) {
      this.#active = active;
    }
  }

  async #load(row: SigningKeyRow): Promise<LoadedKey> {
    const publicKey = createPublicKey({ key: row.publicJwk as never, format: 'jwk' });
    let privateKey: KeyObject | undefined;
    if (row.status === 'active') {
      const pem = await this.vault.open(`authority-key:${row.kid}`, row.privateKeyEnc);
      privateKey = createPrivateKey({ key: Buffer.from(pem).toString('utf8'), format: 'pem' });
    }
    return {
      kid: row.kid,
      alg: row.alg,
      publicJwk: row.publicJwk as JWK,
      publicKey,
      privateKey,
      status: row.status,
      verifyUntil: row.verifyUntil,
      createdAt: row.createdAt,
    };
  }

  /**
   * Creates a new active key; the previous active key is retired and verifies until
   * `now + maxLeaseTtlMs` (no lease it signed can outlive that).
   */
  // Rotations run one at a time (the hourly timer and the admin API may race).
  #rotating: Promise<unknown> = Promise.resolve();

  async rotate(alg: AuthorityAlg, maxLeaseTtlMs: number): Promise<LoadedKey> {
    const run = this.#rotating.then(() => this.#rotate(alg, maxLeaseTtlMs));
    this.#rotating = run.catch(() => undefined);
    return run;
  }

  async #rotate(alg: AuthorityAlg, maxLeaseTtlMs: number): Promise<LoadedKey> {
    const now = this.clock();
    const { publicKey, privateKey } = generate(alg);
    // 96 random bits, lower-case hex (spec §11.2): an opaque name, unique in the JWKS
    // (lower case: it also names the key's sealed vault entry).
    const kid = randomBytes(12).toString('hex');
    const publicJwk = { ...publicKey.export({ format: 'jwk' }), kid, alg, use: 'sig' } as JWK;
    const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    const privateKeyEnc = await this.vault.seal(`authority-key:${kid}`, Buffer.from(pem, 'utf8'));
    const previous = this.#active;
    if (previous !== undefined) {
      const verifyUntil = now + maxLeaseTtlMs;
      await this.store.retireSigningKey(previous.kid, now, verifyUntil);
      this.#keys.set(previous.kid, {
        ...previous,
        status: 'retired',
        privateKey: undefined,
        verifyUntil,
      });
    }
    await this.store.insertSigningKey({
      kid,
      alg,
      publicJwk,
      privateKeyEnc,
      createdAt: now,
    });
    const loaded: LoadedKey = {
      kid,
      alg,
      publicJwk,
      publicKey,
      privateKey,
      status: 'active',
      verifyUntil: undefined,
      createdAt: now,
    };
    this.#keys.set(kid, loaded);
    this.#active = loaded;
    return loaded;
  }

  /**
   * Rotates when the active key is older than `periodMs` (config `authority.key_rotation`;
   * `Infinity`: never by age), or when it is not of the configured algorithm
   * (`authority.signing_alg` changed on an existing node, issue 16): the new key signs from
   * now on, the old one keeps verifying the leases it signed until they expire.
   * @returns the new key, or undefined when no rotation was due.
   */
  async rotateIfDue(
    alg: AuthorityAlg,
    periodMs: number,
    maxLeaseTtlMs: number,
  ): Promise<LoadedKey | undefined> {
    const active = this.#active;
    if (active !== undefined && active.alg === alg && this.clock() - active.createdAt < periodMs) {
      return undefined;
    }
    return this.rotate(alg, maxLeaseTtlMs);
  }

  /** The key that signs new leases and checkpoints. */
  active(): LoadedKey & { privateKey: KeyObject } {
    const key = this.#active;
    if (key?.privateKey === undefined) throw new NexusError('internal_error');
    return key as LoadedKey & { privateKey: KeyObject };
  }

  /** The public key for `kid`, if it may still verify. */
  publicKey(
    kid: string | undefined,
    options: { ignoreExpiry?: boolean } = {},
  ): KeyObject | undefined {
    if (kid === undefined) return undefined;
    const key = this.#keys.get(kid);
    if (key === undefined) return undefined;
    if (!options.ignoreExpiry && key.verifyUntil !== undefined && key.verifyUntil < this.clock()) {
      return undefined;
    }
    return key.publicKey;
  }

  /** The JWKS document: every key that may still verify. */
  jwks(): { keys: JWK[] } {
    const now = this.clock();
    return {
      keys: [...this.#keys.values()]
        .filter((k) => k.verifyUntil === undefined || k.verifyUntil >= now)
        .map((k) => ({ ...k.publicJwk })),
    };
  }
}
