// Issue 10: method overrides and look-alikes of an injected query parameter, as names
// some server reads them (table-driven; the wire attacks are in test/security).
import { describe, expect, it } from 'vitest';
import { isNexusError } from '@nexus-proxy/protocol';
import { checkBody, checkQuery, nameReadings } from './param-names.js';
import { forwardableRequestHeaders } from './strip-headers.js';

function codeOf(fn: () => void): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    if (!isNexusError(err)) throw err;
    return err.code;
  }
}

describe('checkQuery: look-alikes of the injected parameter', () => {
  it.each([
    'api_key=x',
    'API_KEY=x',
    'Api_Key=x',
    'api_key[]=x',
    'api_key[0]=x',
    'api.key=x',
    'api+key=x',
    'api%20key=x',
    'api-key=x',
    'api_key%00=x',
    'api_key%00junk=x',
    'api%5Fkey=x',
    'api%255Fkey=x',
    '%61pi_key=x',
    'api[key=x',
    '+api_key=x',
    ' api_key=x'.replace(' ', '%20'),
    'ａｐｉ_ｋｅｙ=x',
    'api_key',
    'a=1;api_key=x',
    'a=1&api_key=x&b=2',
  ])('refuses %s next to api_key', (query) => {
    expect(codeOf(() => checkQuery(query, ['api_key']))).toBe('query_param_reserved');
  });

  it.each([
    'apikey=x',
    'api_keys=x',
    'my_api_key=x',
    'key=x',
    'x=api_key',
    'q=api_key%3Dx',
    'page=2&per_page=100',
    '',
  ])('keeps %s', (query) => {
    expect(codeOf(() => checkQuery(query, ['api_key']))).toBeUndefined();
  });

  it('compares SigV4 presigning parameters the same way', () => {
    const injected = ['X-Amz-Signature', 'X-Amz-Credential'];
    expect(codeOf(() => checkQuery('x-amz-signature=abc', injected))).toBe('query_param_reserved');
    expect(codeOf(() => checkQuery('X_Amz_Credential=abc', injected))).toBe('query_param_reserved');
    expect(codeOf(() => checkQuery('prefix=logs/&max-keys=10', injected))).toBeUndefined();
  });

  it('names the configured parameter in the detail, never the agent spelling or value', () => {
    try {
      checkQuery('API%2Ekey=agent-value', ['api_key']);
      expect.unreachable();
    } catch (err) {
      const detail = (err as { detail?: string }).detail ?? '';
      expect(detail).toContain('"api_key"');
      expect(detail).not.toContain('agent-value');
      expect(detail).not.toContain('API%2Ekey');
    }
  });
});

describe('method overrides', () => {
  it.each([
    '_method=DELETE',
    '_METHOD=delete',
    '%5Fmethod=DELETE',
    '%255Fmethod=DELETE',
    '_method[]=DELETE',
    '_method%00=DELETE',
    '.method=DELETE',
    '[method=DELETE',
    '+_method=DELETE',
    'x=1;_method=DELETE',
    'X-HTTP-Method-Override=DELETE',
    'x_http_method_override=DELETE',
    'x-http-method=DELETE',
    'X-Method-Override=PUT',
  ])('refuses %s in the query', (query) => {
    expect(codeOf(() => checkQuery(query, []))).toBe('method_override_refused');
  });

  it.each([
    'payment_method=card',
    'method=instant',
    'methods=a',
    'x=_method',
    'q=_method%3DDELETE',
  ])('keeps the ordinary field %s', (query) => {
    expect(codeOf(() => checkQuery(query, []))).toBeUndefined();
    expect(
      codeOf(() => checkBody('application/x-www-form-urlencoded', Buffer.from(query))),
    ).toBeUndefined();
  });

  it.each([
    ['application/x-www-form-urlencoded', 'amount=1&_method=DELETE'],
    ['application/x-www-form-urlencoded; charset=utf-8', 'a=1&%5Fmethod=DELETE'],
    ['Application/X-WWW-Form-Urlencoded', '_method[]=PATCH'],
    ['application/json', '{"amount":1,"_method":"DELETE"}'],
    ['application/json', '{"\\u005fmethod":"DELETE"}'],
    ['application/vnd.api+json', '{"_method":"DELETE"}'],
    [
      'multipart/form-data; boundary=XyZ',
      '--XyZ\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--XyZ\r\nContent-Disposition: form-data; name="_method"\r\n\r\nDELETE\r\n--XyZ--\r\n',
    ],
    [
      'multipart/form-data; boundary="b b"',
      "--b b\nContent-Disposition: form-data; name*=utf-8''%5Fmethod\n\nDELETE\n--b b--\n",
    ],
  ])('refuses a %s body with an override field', (type, body) => {
    expect(codeOf(() => checkBody(type, Buffer.from(body)))).toBe('method_override_refused');
  });

  it.each([
    ['application/x-www-form-urlencoded', 'payment_method=pm_card_visa&amount=100'],
    ['application/json', '{"payment_method":"card","method":"instant","nested":{"_method":"x"}}'],
    ['application/json', '["_method"]'],
    ['application/json', 'not json _method'],
    ['text/plain', '_method=DELETE'],
    [
      'multipart/form-data; boundary=XyZ',
      '--XyZ\r\nContent-Disposition: form-data; name="file"; filename="_method"\r\n\r\n_method=DELETE\r\n--XyZ--\r\n',
    ],
  ])('keeps a %s body without one', (type, body) => {
    expect(codeOf(() => checkBody(type, Buffer.from(body)))).toBeUndefined();
  });

  it('readings of a name include decoded, truncated, folded and PHP-mapped forms', () => {
    expect([...nameReadings('API%2Ekey%5B%5D')]).toContain('api_key');
    expect([...nameReadings('_method%00x')]).toContain('_method');
  });
});

describe('forwardableRequestHeaders: forwarding, rewrite and override families', () => {
  it('drops every spelling an upstream framework could trust', () => {
    const sent: Record<string, string[]> = {};
    for (const name of [
      'x-forwarded-uri',
      'x-forwarded-path',
      'x-forwarded-scheme',
      'x-forwarded-method',
      'x-forwarded-ssl',
      'x-envoy-original-path',
      'x-envoy-retry-on',
      'x-original-method',
      'x-original-uri',
      'x-client-ip',
      'true-client-ip',
      'cf-connecting-ip',
      'fastly-client-ip',
      'x-cluster-client-ip',
      'x-ms-range',
      'request-range',
      'l5d-dst-override',
      'via',
      'x_forwarded_for',
      'X_HTTP_METHOD_OVERRIDE',
      'x_original_url',
      'nexus_error',
      'x_api_key',
    ]) {
      sent[name] = ['v'];
    }
    sent['x-custom'] = ['kept'];
    sent['x-payment-method'] = ['kept'];
    expect(forwardableRequestHeaders(sent, ['x-api-key'])).toEqual({
      'x-custom': 'kept',
      'x-payment-method': 'kept',
    });
  });
});
