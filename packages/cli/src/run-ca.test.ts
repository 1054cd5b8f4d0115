// The per-run CA of forward-proxy mode (issue 11): what it signs, and what it refuses to.
import { X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createRunCa } from './run-ca.js';

describe('run CA', () => {
  it('issues a leaf per owned host, cached, that verifies against the CA', async () => {
    const ca = await createRunCa(['api.example.test', 'other.test']);
    const caCert = new X509Certificate(ca.certPem);
    expect(caCert.ca).toBe(true);
    const leafPem = await ca.leaf('api.example.test');
    expect(await ca.leaf('api.example.test')).toBe(leafPem);
    const leaf = new X509Certificate(leafPem.cert);
    expect(leaf.ca).toBe(false);
    expect(leaf.verify(caCert.publicKey)).toBe(true);
    expect(leaf.checkIssued(caCert)).toBe(true);
    expect(leaf.checkHost('api.example.test')).toBe('api.example.test');
    expect(leaf.checkHost('other.test')).toBeUndefined();
    expect(leafPem.key).toMatch(/^-----BEGIN PRIVATE KEY-----/);
  });

  it('vouches for no host outside the owned ones, and is short-lived', async () => {
    const ca = await createRunCa(['api.example.test'], { lifetimeMs: 3600_000 });
    await expect(ca.leaf('evil.test')).rejects.toThrow();
    await expect(ca.leaf('sub.api.example.test')).rejects.toThrow();
    const cert = new X509Certificate(ca.certPem);
    const lifetime = Date.parse(cert.validTo) - Date.parse(cert.validFrom);
    expect(lifetime).toBeLessThanOrEqual(3600_000 + 10 * 60_000);
    // Only the certificate is exported; the PEM holds no key.
    expect(ca.certPem).not.toContain('PRIVATE KEY');
  });

  it('refuses to exist without a host', async () => {
    await expect(createRunCa([])).rejects.toThrow();
  });
});
