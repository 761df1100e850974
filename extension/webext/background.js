// @ts-check
/*
 * Quiver background: a Chromium service worker and a Firefox event page, as ES modules
 * (manifest `background.type: "module"`). This file wires them and registers the listeners:
 *   background/native.js      the native port, requests (chunked replies joined by the wasm
 *                             core's Reassembler), the daemon's status and events
 *   background/pairing.js     content scripts and their panels (PAIRING)
 *   background/panel-port.js  what a paired panel may ask
 *   background/queue.js       the send queue
 *   background/library.js     the library and its search index, built once per change
 *   background/page-rpc.js    the extension pages' port, with its allow-list of daemon methods
 *   background/sites.js       content scripts for the user's site rules
 *
 * - Keeps ONE native-messaging port to `quiver native-host` open, reconnecting with backoff.
 * - Pairs each assistant frame's content script with the panel it injected (by token, registered
 *   by the content script first; see PAIRING below).
 * - Runs the send pipeline: send.reserve -> wait -> send.begin -> content script posts -> send.done,
 *   strictly first in, first out per workspace, surviving native-port drops and background restarts.
 *
 * Ports (runtime.connect):
 *   "quiver-cs:<token>"    from a content script in an assistant frame
 *     cs -> bg  {type:"register", workspace, parent}      first, on every (re)connect: the origins
 *                                                       of the top frame (the workspace: keys the
 *                                                       queue and meter, filters history) and of the
 *                                                       parent, as the content script established them
 *               {type:"panel-frame", frameId}           Firefox: the frame id of its panel iframe
 *               {type:"posted", send_id, ok, error?}
 *               {type:"context", url, selected: [...]}  the frame URL and the Sobot `selected`
 *                                                       messages so far (forwarded to the panel)
 *               {type:"focus"}                          the agent pressed Alt+Shift+Q or the launcher:
 *                                                       forwarded to the panel as {type:"focus-search"}
 *     bg -> cs  {type:"expect"}                         a post may follow: sent just after each request
 *                                                       that may grant a slot; nothing to answer (it
 *                                                       wakes the frame's process meanwhile)
 *               {type:"post", send_id, wire, post_as}
 *               {type:"open"}                           the `open-palette` command: show + focus
 *   "quiver-panel:<token>[:<resume>]" from the panel iframe that content script injected
 *     PAIRING: accepted only when a connected content script registered <token> (with its
 *     workspace), the panel is in the same tab (and, in Firefox, in the frame the content script
 *     named), and the token has not paired a panel before, unless <resume> is the secret the
 *     background gave that panel ({type:"paired", resume}) and no other panel holds the token.
 *     Otherwise: {type:"refused", code: "not_registered"|"wrong_frame"|"token_used"|"bad_request",
 *     message} and the port is closed. A stolen token is thus useless: the real panel paired first.
 *     Paired tokens and their resume secrets are kept in storage.session, so a background restart
 *     does not make a used token usable again.
 *     panel -> bg  {type:"status", req}                 -> {type:"reply", req, result: Status}
 *                  {type:"templates", req, full?}       -> {type:"reply", req, result: {generation, usage,
 *                                                          stored: true} (the rest is in IndexedDB) or
 *                                                          {templates, meta?, libraries?, index}: meta[i]
 *                                                          is templates[i]'s library and team state
 *                  {type:"history", req, conversation?, customer?, limit?}
 *                                                       -> {type:"reply", req, result: {rows}}: the
 *                                                          daemon's history.list for this workspace
 *                                                          only, filtered by conversation/customer
 *                  {type:"hello", req}                  -> the daemon's hello (a bare round trip)
 *                  {type:"usage", req}                  -> {type:"reply", req, result: {usage:
 *                                                          [{id, usage_count, last_used_at}]}}
 *                  {type:"send", req?, key, batch?, template_id, library?, revision, part_index,
 *                   payload, post_as, platform, conversation?, customer?}
 *                                                       -> send-state events for `key`, and
 *                                                          {type:"reply", req, result: {key}} 25 ms
 *                                                          after it was queued (a refusal at once)
 *                  {type:"cancel", req?, key}           -> {type:"reply", req, result: {key, cancelled}}
 *     bg -> panel  {type:"paired", resume}                 first, when accepted
 *                  {type:"status", status: Status}      on connect and whenever it changes
 *                  {type:"focus-search"}                the agent asked for the search box
 *                  {type:"context", url, selected}     on connect and whenever the frame reports it
 *                  {type:"library-changed"}             the daemon's library.changed event, or
 *                                                       team.changed (a template's team state)
 *                  {type:"send-state", key, send_id, state, template_id, library, part_index,
 *                   delay_ms?, not_before_ms?, error?: {code, message}}
 *                  state: queued (delay_ms: ms until its slot, null while not yet reserved;
 *                  not_before_ms: the slot's wall-clock time, from the daemon's meter),
 *                  sending, sent, failed, cancelled. A send is `queued` from the panel's request:
 *                  the first state it is told is the reservation's answer (`sending`, `failed`, or
 *                  `queued` with its delay). On (re)connect the panel is sent the state of each
 *                  of its sends still in the queue.
 *     A failed request replies {type:"reply", req, error: {code, message}}: protocol error codes
 *     from the daemon unchanged, plus these local ones:
 *       host_unavailable   no native port (host not installed, not started yet, or restarting)
 *       host_disconnected  the native port dropped before the reply came
 *       timeout            no reply within the time limit
 *       no_assistant_frame the panel's content script is not connected
 *       bad_request        the panel sent a message this background does not understand
 *     and in send-state errors: cancelled (with why), post_failed (the frame could not post).
 *   A template's parts carry the same `batch`: when one part fails or is cancelled, the later
 *   parts of that batch are cancelled (a template never arrives with a hole in it).
 *   Status = {state: "up"|"down", host: "connected"|"connecting"|"disconnected",
 *             reason: string|null, daemon: string|null}
 */

import { api } from './lib/browser.js';
import { libraryBuilt, libraryChanged } from './background/library.js';
import { log, quietly } from './background/log.js';
import { connectNative, hasPort, onDaemonEvent, onStatus, RECONNECT_ALARM } from './background/native.js';
import { connectPage, sendToPages } from './background/page-rpc.js';
import { connectContentScript, connectPanel, pairs, sendToPanels } from './background/pairing.js';
import { onPanelMessage } from './background/panel-port.js';
import { startQueue } from './background/queue.js';
import { syncUserSites } from './background/sites.js';

const TOKEN_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

onStatus((status) => {
  sendToPanels({ type: 'status', status });
  sendToPages({ type: 'status', status });
});

onDaemonEvent((name, data, wasUp) => {
  if (name === 'daemon.up') {
    if (!wasUp && libraryBuilt()) {
      // Changes made while the daemon was out of reach sent no event here.
      libraryChanged();
      sendToPanels({ type: 'library-changed' });
    }
  } else if (name !== 'daemon.down') {
    // Other daemon events (library.changed, meter.released, ...) go to the extension's pages;
    // panels hear of library changes to reload their templates.
    sendToPages({ type: 'event', name, data });
    // A team library's state changes without its templates changing too (a push recorded,
    // a draft, a conflict, a library joined, renamed or purged): the palette shows it.
    const teamState = name === 'team.changed' && data?.what !== 'connection';
    if (name === 'library.changed' || name === 'events.lost' || teamState) {
      libraryChanged();
      sendToPanels({ type: 'library-changed' });
    }
  }
});

/** Routes a new port by its name: content script, panel or extension page. */
function onConnect(/** @type {chrome.runtime.Port} */ port) {
  const name = port.name ?? '';
  const sender = port.sender ?? {};
  if (sender.id !== undefined && sender.id !== api.runtime.id) {
    port.disconnect();
    return;
  }
  const [kind, token = '', resume = null, ...extra] = name.split(':');
  if (!TOKEN_RE.test(token) || extra.length || (resume !== null && (kind !== 'quiver-panel' || !TOKEN_RE.test(resume)))) {
    log.warn('refusing port', name);
    port.disconnect();
    return;
  }
  if (kind === 'quiver-cs') connectContentScript(port, token, sender);
  else if (kind === 'quiver-panel') connectPanel(port, token, resume, sender, onPanelMessage).catch((e) => log.warn('panel port', e));
  else if (kind === 'quiver-page') connectPage(port, sender);
  else {
    log.warn('refusing port', name);
    port.disconnect();
  }
}

/** The `open-palette` command: tell the assistant frames of the active tab to show the palette. */
async function openPaletteInActiveTab(/** @type {chrome.tabs.Tab | undefined} */ tab) {
  let tabId = tab?.id;
  if (tabId === undefined && api.tabs?.query) {
    const [active] = await api.tabs.query({ active: true, currentWindow: true });
    tabId = active?.id;
  }
  for (const pair of pairs.values()) {
    const cs = pair.cs;
    if (cs && (tabId === undefined || pair.tabId === tabId)) quietly(() => cs.postMessage({ type: 'open' }));
  }
}

// Start-up. Listeners are registered synchronously (a service worker must do so to be woken).

api.runtime.onConnect.addListener(onConnect);
api.alarms.onAlarm.addListener((alarm) => {
  // Being woken is the point; top-level code has already restored the queue and connected.
  if (alarm.name === RECONNECT_ALARM && !hasPort()) connectNative();
});
// With this listener Chromium starts the background with the browser: the native host connects
// before the agent opens a workspace, and sends left over from the last session are cleaned up.
api.runtime.onStartup.addListener(() => {});
api.commands?.onCommand?.addListener((command, tab) => {
  if (command === 'open-palette') openPaletteInActiveTab(tab).catch((e) => log.warn('open-palette', e));
});
api.storage.onChanged?.addListener((changes, area) => {
  if (area === 'local' && changes.siteRules) syncUserSites();
});
api.permissions?.onAdded?.addListener(() => syncUserSites());
api.permissions?.onRemoved?.addListener(() => syncUserSites());
api.runtime.onInstalled?.addListener(() => syncUserSites());

startQueue();
connectNative();
