// Test helper shared by the protocol's suites (not built into dist).
import { isNexusError } from '../errors.js';

/**
 * The error code a promise rejects with: undefined when it resolves, `foreign: ...` when
 * it rejects with anything but a NexusError (the protocol must never do that).
 */
export async function code(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return isNexusError(err) ? err.code : `foreign: ${String(err)}`;
  }
}
