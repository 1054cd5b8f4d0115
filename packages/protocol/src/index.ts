// @nexus-proxy/protocol: the Nexus v1 wire format (errors, structured fields, RFC 9530 digests,
// RFC 9421 signatures, lease tokens, the request profile). Pure: no I/O.

export const VERSION = '0.1.0';

export { ERROR_CODES, NexusError, isNexusError, problemDetails, safeDetail } from './errors.js';
export type { ErrorCode, ErrorCodeInfo, NexusErrorOptions, ProblemDetails } from './errors.js';

export {
  SfDecimal,
  SfToken,
  parseByteSequence,
  parseDictionary,
  parseInnerList,
  parseItem,
  parseList,
  parseSfString,
  serializeBareItem,
  serializeByteSequence,
  serializeDictionary,
  serializeInnerList,
  serializeItem,
  serializeList,
  serializeParams,
  serializeSfString,
  sfItem,
} from './structured-fields.js';
export type {
  BareItem,
  ParseOptions,
  SfDictionary,
  SfInnerList,
  SfItem,
  SfList,
  SfMember,
  SfParameters,
} from './structured-fields.js';

export {
  base64Decode,
  base64Encode,
  base64UrlDecode,
  base64UrlEncode,
  bytesEqual,
} from './encoding.js';
export type { BodyInput } from './encoding.js';

export {
  DIGEST_ALGORITHMS,
  createContentDigest,
  verifyContentDigest,
  webCryptoDigest,
} from './digest.js';
export type { DigestFunction } from './digest.js';
export type { DigestAlgorithm } from './digest.js';

export {
  SIGNATURE_ALGORITHMS,
  algorithmForCryptoKey,
  importJwk,
  isSignatureAlgorithm,
  signBytes,
  verifyBytes,
} from './http-signatures/algorithms.js';
export type { SignatureAlgorithm } from './http-signatures/algorithms.js';
export {
  STRUCTURED_FIELD_TYPES,
  deriveComponent,
  serializeComponentId,
} from './http-signatures/components.js';
export type {
  ComponentId,
  ComponentInput,
  DeriveContext,
  StructuredFieldType,
} from './http-signatures/components.js';
export { fieldLines, fieldValue, splitUrl } from './http-signatures/message.js';
export type { HeaderInput, HttpMessage, UrlParts } from './http-signatures/message.js';
export {
  createSignatureBase,
  parseSignatures,
  signMessage,
  verifyMessage,
} from './http-signatures/signatures.js';
export type {
  BaseOptions,
  ParsedSignature,
  SignMessageOptions,
  SignatureBase,
  SignedMessage,
  VerifiedMessage,
  VerifyMessageOptions,
} from './http-signatures/signatures.js';

export {
  LEASE_ALGORITHMS,
  LEASE_TYP,
  agentNameFromSub,
  isLeaseTyp,
  agentSub,
  signLease,
  signatureAlgorithmForJwk,
  verifyLease,
} from './lease.js';
export type {
  AgentPublicJwk,
  Clock,
  LeaseAlgorithm,
  LeaseClaims,
  LeaseKey,
  LeaseProtectedHeader,
  SignLeaseOptions,
  VerifiedLease,
  VerifyLeaseOptions,
} from './lease.js';

export {
  DEFAULT_SIGNATURE_PROFILE,
  MAX_INTENT_LENGTH,
  MAX_SIGNATURE_WINDOW,
  MIN_NONCE_LENGTH,
  SIGNATURE_LABEL,
  SIGNATURE_PROFILES,
  SIGNATURE_TAG,
  generateAgentKey,
  jwkThumbprint,
  signRequest,
  signatureAudience,
  verifyRequest,
  verifyRequestBody,
  verifyRequestSignature,
  webCryptoVerify,
} from './profile.js';
export type {
  AgentKeyPair,
  AgentSignatureAlgorithm,
  SignRequestOptions,
  SignatureProfile,
  SignatureVerifyFunction,
  VerifiedRequest,
  VerifyRequestOptions,
  VerifyRequestSignatureOptions,
} from './profile.js';

export {
  MAX_DELEGATED_SERVICES,
  MAX_INTENT_PATTERN_LENGTH,
  checkDelegatedRequest,
  delegatedIntents,
  delegatedServices,
  intentMatches,
  narrowDelegation,
} from './delegation.js';
export type { DelegatedGrant, DelegationRequest } from './delegation.js';

export {
  NEXUS_ORIGIN_FIELD,
  RESPONSE_SIGNATURE_LABEL,
  RESPONSE_SIGNATURE_TAG,
  RESPONSE_SIGNATURE_WINDOW,
  relayedResponseSignatureBase,
  responseSignatureBase,
  responseSignatureComponents,
  responseSignatureParams,
  verifyRelayedResponseSignature,
  verifyResponseSignature,
} from './response-signature.js';
export type {
  RelayedSignatureInput,
  VerifyRelayedResponseOptions,
  VerifyResponseSignatureOptions,
} from './response-signature.js';

export { RESERVED_SERVICE_NAMES, SERVICE_NAME, parseRoute, serviceTarget } from './route.js';
export type { Route } from './route.js';

export type { CryptoKey, JsonWebKey } from './webcrypto.js';

export { isConformanceVector, runConformanceVector } from './conformance.js';
export type { VectorExpectation, VectorResult } from './conformance.js';

export { NEXUS_JSONRPC_ERROR, mcpRefusal } from './mcp.js';
export type { JsonRpcId, McpRefusal, McpRefusalData } from './mcp.js';
