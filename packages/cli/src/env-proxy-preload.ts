/**
 * Loaded into the command's Node processes by `nexus run` (NODE_OPTIONS `--import`) in
 * forward-proxy mode: on a Node whose built-in `fetch` ignores HTTP_PROXY / HTTPS_PROXY
 * (before 22.21 and 24, where NODE_USE_ENV_PROXY=1 does it natively), it routes `fetch` as
 * those variables say, through undici's EnvHttpProxyAgent. So an unmodified Node 20 agent
 * on the vendors' SDKs (openai, @anthropic-ai/sdk: both call `fetch`) reaches Nexus too.
 * It changes nothing else: Node's `http`/`https` modules still ignore the variables.
 */
import { EnvHttpProxyAgent, setGlobalDispatcher } from 'undici';

const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
const native = major >= 24 || (major === 22 && minor >= 21);
if (!native && (process.env.HTTPS_PROXY ?? process.env.HTTP_PROXY ?? '') !== '') {
  setGlobalDispatcher(new EnvHttpProxyAgent());
}
