/**
 * The parts of undici the platform client uses, without undici's index. The index loads fetch,
 * WebSocket, the mocks and the cookie helpers too; the cookie module touches `globalThis.Headers`,
 * which makes Node 20 load its own bundled undici beside ours, so V8 compiles the WebAssembly HTTP
 * parser twice on every run (about 100 ms and 12 MB on this machine; see the README's performance
 * section). These are the same modules the index re-exports, wired as the index wires them.
 */
import type { Agent as AgentType, Dispatcher as DispatcherType, EnvHttpProxyAgent as EnvHttpProxyAgentType } from "undici";
// @ts-expect-error: undici ships types for its index only; the classes are the index's own.
import AgentModule from "undici/lib/dispatcher/agent.js";
// @ts-expect-error: as above.
import DispatcherModule from "undici/lib/dispatcher/dispatcher.js";
// @ts-expect-error: as above.
import EnvHttpProxyAgentModule from "undici/lib/dispatcher/env-http-proxy-agent.js";
// @ts-expect-error: as above.
import api from "undici/lib/api/index.js";

// As undici's index does: `request` for our calls, `connect` for the proxy's CONNECT tunnel.
for (const [name, method] of Object.entries(api as Record<string, unknown>)) {
  (DispatcherModule as { prototype: Record<string, unknown> }).prototype[name] ??= method;
}

export const Agent = AgentModule as typeof AgentType;
export const EnvHttpProxyAgent = EnvHttpProxyAgentModule as typeof EnvHttpProxyAgentType;
export type Dispatcher = DispatcherType;
