/**
 * `nexus mcp discover --write`: adds a service entry to `nexus.yaml` in place, keeping the
 * file's comments and layout (the `yaml` library's document API), and refusing to replace a
 * service that exists: the operator's entry is never silently overwritten.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { parseDocument } from 'yaml';
import { NexusError } from '@nexus-proxy/protocol';

/** Adds `services.<name>` = `entry` to the YAML file at `path`. */
export async function addServiceToConfigFile(
  path: string,
  name: string,
  entry: Record<string, unknown>,
): Promise<void> {
  const doc = parseDocument(await readFile(path, 'utf8'));
  if (doc.errors.length > 0) {
    throw new NexusError('validation_failed', `${path} is not valid YAML`);
  }
  if (doc.hasIn(['services', name])) {
    throw new NexusError('conflict', `services.${name} exists in ${path}`);
  }
  if (!doc.has('services') || doc.get('services') === null) doc.set('services', {});
  doc.setIn(['services', name], doc.createNode(entry));
  await writeFile(path, doc.toString(), 'utf8');
}
