// WebCrypto type names for a DOM-less TypeScript lib (types only: nothing here runs).

import type { webcrypto } from 'node:crypto';

export type CryptoKey = webcrypto.CryptoKey;
export type CryptoKeyPair = webcrypto.CryptoKeyPair;
export type JsonWebKey = webcrypto.JsonWebKey;
export type KeyUsage = webcrypto.KeyUsage;
export type SubtleCrypto = webcrypto.SubtleCrypto;
export type AlgorithmIdentifier = webcrypto.AlgorithmIdentifier;
export type EcKeyImportParams = webcrypto.EcKeyImportParams;
export type RsaHashedImportParams = webcrypto.RsaHashedImportParams;
export type HmacImportParams = webcrypto.HmacImportParams;
export type EcdsaParams = webcrypto.EcdsaParams;
export type RsaPssParams = webcrypto.RsaPssParams;
