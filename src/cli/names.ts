/** How the CLI names the library's settings: by their flags and its own environment variables. */
import { nameSettings, type SettingNamer } from "../errors.js";

/** Settings are named by their flags in the CLI's messages: `tokenFile` -> `--token-file`, `protocol` -> `--api`. */
export const flagName: SettingNamer = (setting) =>
  setting === "protocol" ? "--api" : `--${setting.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;

/** A protocol's text with its `{setting}` placeholders as flags and `{$NAME}` as the CLI's variables. */
export function renderText(text: string): string {
  return nameSettings(text, flagName).replace(/\{\$([A-Z_]+)\}/g, (_, name: string) => `CERT_RETRIEVER_${name}`);
}
