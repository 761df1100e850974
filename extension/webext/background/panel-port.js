// @ts-check
/**
 * What a paired panel may ask (protocol at the top of background.js): status, the library
 * (templates, channel fit), this workspace's history, a bare `hello`, sends and cancels.
 */
import { errorBody, RpcError } from '../lib/rpc.js';
import { currentLibrary, libraryFit, libraryReply } from './library.js';
import { CLIENT, PROTOCOL, request, status } from './native.js';
import { sendToPanel } from './pairing.js';
import { acceptSend, cancelByKey, checkSend, QUIET_AFTER_SEND_MS, ready } from './queue.js';

/**
 * @param {import('./pairing.js').Pair} pair
 * @param {chrome.runtime.Port} port
 * @param {any} msg
 */
export function onPanelMessage(pair, port, msg) {
  if (pair.panel !== port) return;
  const req = msg?.req;
  /** @param {unknown} result */
  const reply = (result) => req !== undefined && sendToPanel(pair, { type: 'reply', req, result });
  /** @param {unknown} e */
  const fail = (e) => req !== undefined && sendToPanel(pair, { type: 'reply', req, error: errorBody(e) });
  switch (msg?.type) {
    case 'status':
      reply(status());
      break;
    case 'templates':
      currentLibrary().then((l) => libraryReply(l, msg.full === true)).then(reply, fail);
      break;
    case 'fit': {
      if (typeof msg.target !== 'object' || msg.target === null || !Number.isInteger(msg.generation)) {
        fail(new RpcError('bad_request', 'fit needs {target: object, generation: integer}'));
        break;
      }
      const { generation, target } = msg;
      currentLibrary().then((l) => libraryFit(l, generation, target)).then(reply, fail);
      break;
    }
    case 'history': {
      // Only this workspace's history, never the whole of it.
      if (!pair.workspace) {
        fail(new RpcError('no_assistant_frame', 'this panel has no workspace'));
        break;
      }
      /** @type {Record<string, unknown>} */
      const params = { limit: Math.min(Math.max(Number(msg.limit) || 20, 1), 200), workspace: pair.workspace };
      for (const k of ['conversation', 'customer']) if (typeof msg[k] === 'string' && msg[k]) params[k] = msg[k];
      request('history.list', params).then((r) => reply({ rows: r?.rows ?? [] }), fail);
      break;
    }
    case 'hello':
      request('hello', { protocol: PROTOCOL, client: CLIENT }).then(reply, fail);
      break;
    case 'send': {
      const bad = checkSend(msg);
      if (bad) {
        fail(new RpcError('bad_request', bad));
        break;
      }
      // One intake chain per panel keeps its sends in the order they were asked for. Queued,
      // the send is acknowledged a moment later, off its reservation's way (the panel learns
      // its progress from `send-state`); a refusal is answered at once.
      pair.intake = (pair.intake ?? Promise.resolve())
        .then(() => acceptSend(pair, msg))
        .then((r) => void setTimeout(() => reply(r), QUIET_AFTER_SEND_MS), fail);
      break;
    }
    case 'cancel':
      ready.then(() => reply({ key: msg.key, cancelled: cancelByKey(pair.token, msg.key) }), fail);
      break;
    default:
      fail(new RpcError('bad_request', `unknown panel message type ${JSON.stringify(msg?.type)}`));
  }
}
