import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Command, Option } from "commander";
import { describeCause } from "../errors.js";
import { writableByOthers } from "../fs/file-trust.js";
import { configError } from "./hints.js";
import { cliIo } from "./io.js";
import { attributeName, OPTION_SPECS, SECRET_CONFIG_KEYS } from "./options.js";

/** The system's config file, read when --config is not given. */
const DEFAULT_CONFIG_PATH = "/etc/cert-retriever/config.json";

/** The user's config file (`$XDG_CONFIG_HOME/cert-retriever/config.json`, else under ~/.config), which wins over the system's. */
function userConfigPath(): string | undefined {
  const { env } = cliIo();
  const base = env.XDG_CONFIG_HOME || (env.HOME ? join(env.HOME, ".config") : undefined);
  return base ? join(base, "cert-retriever", "config.json") : undefined;
}

/** Settings that came from the config file and are not options. */
export interface ConfigExtras {
  /** The password, from a config file that only its owner can read. */
  password?: string;
  /** The file it came from, if any. */
  path?: string;
}

/**
 * Fills the options of `cmd` that neither a flag nor the environment set from the config files
 * (precedence: flags > environment > --config, else the user's file > the system's > defaults).
 * An unknown key is an error that names it; a password is taken only from a file of mode 0600 (or
 * stricter), with a warning otherwise.
 */
export async function applyConfigFile(cmd: Command, warn: (line: string) => void): Promise<ConfigExtras> {
  const given = cmd.getOptionValue("config") as string | undefined;
  const paths = given ? [given] : [userConfigPath(), DEFAULT_CONFIG_PATH].filter((p): p is string => p !== undefined);
  let extras: ConfigExtras = {};
  // The file that wins first: a later one fills only what is still unset.
  for (const path of paths) {
    const found = await applyOne(cmd, path, Boolean(given), warn, path !== given && path !== DEFAULT_CONFIG_PATH);
    if (found) extras = { ...found, ...extras };
  }
  return extras;
}

/**
 * Applies one config file. `optional`: the user's file, which nobody named: one that cannot be
 * read or cannot be trusted (a HOME that is another user's, after `su`) is skipped with a warning,
 * never used and never fatal.
 */
async function applyOne(
  cmd: Command,
  path: string,
  given: boolean,
  warn: (line: string) => void,
  optional = false,
): Promise<ConfigExtras | undefined> {
  const data = await readConfigFile(path, given, warn, optional);
  if (data === undefined) return undefined;
  const known = new Map(cmd.options.map((o) => [o.attributeName(), o]));
  const extras: ConfigExtras = { path };
  for (const [key, value] of Object.entries(data)) {
    if ((SECRET_CONFIG_KEYS as readonly string[]).includes(key)) {
      if (typeof value !== "string") throw configError(`the config file ${path}: '${key}' must be a string`);
      const mode = (await stat(path)).mode & 0o777;
      if (mode & 0o077) {
        warn(
          `warning: ignoring '${key}' in ${path}: the file is readable by others (mode ${mode.toString(8)}); chmod 600 it or use a password file`,
        );
      } else {
        extras.password = value;
      }
      continue;
    }
    const option = known.get(key);
    if (!option || key === "config") {
      // One file serves every command: a key another command uses is skipped here.
      if (key !== "config" && OPTION_SPECS.some((s) => attributeName(s.flags) === key)) continue;
      throw configError(
        `the config file ${path} has an unknown key '${key}'`,
        `known keys: ${OPTION_SPECS.map((s) => attributeName(s.flags))
          .filter((k) => k !== "config")
          .join(", ")}, password`,
      );
    }
    const source = cmd.getOptionValueSource(key);
    if (source === "cli" || source === "env" || source === "config") continue; // flags, the environment and a file read before win
    cmd.setOptionValueWithSource(key, optionValue(option, path, key, value), "config");
  }
  return extras;
}

/** A config file's object, or undefined when there is none to apply (absent, or an optional one skipped). */
async function readConfigFile(
  path: string,
  given: boolean,
  warn: (line: string) => void,
  optional: boolean,
): Promise<Record<string, unknown> | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (!given && (code === "ENOENT" || (optional && code === "ENOTDIR"))) return undefined;
    if (optional) {
      warn(`warning: skipping the user's config file ${path}: ${describeCause(err)}`);
      return undefined;
    }
    throw configError(
      `cannot read the config file ${path}: ${describeCause(err)}`,
      given ? "check --config or CERT_RETRIEVER_CONFIG" : undefined,
      err,
      path,
    );
  }
  try {
    await checkTrusted(path, "config file");
  } catch (err) {
    if (!optional) throw err;
    warn(`warning: skipping the user's config file: ${(err as Error).message}`);
    return undefined;
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    // Node's message quotes the text around the error, which may be a password: give the place
    // only, and no cause (--debug would print it).
    const at = /position (\d+)/.exec(describeCause(err))?.[1];
    const where = at === undefined ? "" : ` (line ${text.slice(0, Number(at)).split("\n").length})`;
    throw configError(`the config file ${path} is not valid JSON${where}`);
  }
  if (!data || typeof data !== "object" || Array.isArray(data))
    throw configError(`the config file ${path} must hold a JSON object`);
  return data as Record<string, unknown>;
}

/** A config value as the option takes it: a list, a switch, or text (a duration with its unit, a choice among the option's). */
function optionValue(option: Option, path: string, key: string, value: unknown): unknown {
  const expectsArray = Array.isArray(option.defaultValue);
  const expectsBoolean = !option.required && !option.optional; // a switch
  if (
    expectsArray
      ? !Array.isArray(value) || !value.every((v) => typeof v === "string")
      : expectsBoolean
        ? typeof value !== "boolean"
        : typeof value !== "string" && typeof value !== "number"
  ) {
    throw configError(
      `the config file ${path}: '${key}' must be ${expectsArray ? "a list of strings" : expectsBoolean ? "true or false" : "a string"}`,
    );
  }
  if (typeof value === "number" && /<duration>/.test(option.flags)) {
    throw configError(
      `the config file ${path}: '${key}' must be a duration with its unit, such as "${value}s", not the number ${value}`,
      undefined,
      undefined,
      path,
    );
  }
  const text = expectsArray || expectsBoolean ? value : String(value);
  if (option.argChoices && !option.argChoices.includes(text as string)) {
    throw configError(
      `the config file ${path}: '${key}' must be one of ${option.argChoices.join(", ")}, not '${String(value)}'`,
    );
  }
  return text;
}

/**
 * Refuses a file that decides where secrets go (the config file) or holds one (password and token
 * files) when another user could have written it: writable by group or others, or owned by a user
 * other than us and root. As OpenSSH refuses such a key or config file.
 */
export async function checkTrusted(path: string, what: string): Promise<void> {
  const st = await stat(path).catch(() => undefined);
  const reason = st ? writableByOthers(st) : undefined;
  if (reason) {
    throw configError(
      `refusing the ${what} ${path}: ${reason}`,
      reason.startsWith("other users")
        ? `chmod go-w ${path}`
        : "have it owned by root or by the user that runs cert-retriever",
    );
  }
}
