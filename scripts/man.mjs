#!/usr/bin/env node
// The man page, dist/man/cert-retriever.1 (roff), made at build time from the built program's
// own commands and options: the same tree that --help and `cert-retriever completion` walk, so the
// three cannot drift apart. Run after tsc (npm run build); package.json's "man" installs it.
import { mkdir, readFile, writeFile } from "node:fs/promises";

const dist = new URL("../dist/", import.meta.url);
const out = new URL("man/cert-retriever.1", dist);
const pkg = JSON.parse(await readFile(new URL("../package.json", import.meta.url), "utf8"));
const { commandTree, allNodes } = await import(new URL("cli/commands/completion.js", dist).href);
const { EXIT_CODE_MEANINGS } = await import(new URL("cli/exit-codes.js", dist).href);

/** Variables the program reads that belong to no option (those are found on the options). */
const OTHER_VARIABLES = [
  [
    "CERT_RETRIEVER_PASSWORD",
    "the platform user's password, when --password-stdin and --password-file (or CERT_RETRIEVER_PASSWORD_FILE) give none; it wins over the systemd credential and the settings file",
  ],
  [
    "CERT_RETRIEVER_ENTITY_PASSWORD",
    "enroll: the EJBCA end-entity password (default: dojot's 'dojot'); --entity-password-file wins over it",
  ],
  [
    "CERT_RETRIEVER_CACHE_DIR",
    "the single-file build: an absolute path to a directory that only this user (or root) can write, where V8's compiled code is kept between runs, which saves tens of milliseconds of each start after the first; made (0700) if missing, never its parents; without it nothing is cached",
  ],
  [
    "CERT_RETRIEVER_PKCS11_PIN",
    "the PIN of the token --key names, when its URI has no pin-source=; it wins over the systemd credential 'pin'",
  ],
  [
    "PKCS11_MODULE_PATH",
    "the PKCS#11 module, when neither the --key URI's module-path= nor --pkcs11-module gives one (OpenSSL's pkcs11 engine reads it too)",
  ],
  [
    "CREDENTIALS_DIRECTORY",
    "set by systemd (LoadCredential=): the credential 'password' is used as the password, 'token' as --token-file and 'pin' as the token's PIN, when no flag or variable gives them",
  ],
  ["NO_COLOR", "when set, the progress on a terminal has no colour"],
  [
    "CERT_RETRIEVER_CERT_FILE",
    "set for the --exec command (not read): the new certificate's file; beside it CERT_RETRIEVER_KEY_FILE (or CERT_RETRIEVER_KEY_URI_FILE for a token key), CERT_RETRIEVER_CA_FILE, CERT_RETRIEVER_DEVICE_ID, CERT_RETRIEVER_FINGERPRINT, CERT_RETRIEVER_SERIAL, CERT_RETRIEVER_NOT_AFTER, CERT_RETRIEVER_PREVIOUS_FINGERPRINT (a renewal), CERT_RETRIEVER_STORE and CERT_RETRIEVER_STORE_LOCATION; the secrets this run holds are not passed on",
  ],
];

/** The program as main() parses with, built without parsing anything. */
async function loadProgram() {
  const cli = await import(new URL("cli/main.js", dist).href);
  return cli.buildProgram({ debug: false, json: false, exitCode: 0 });
}

/** Text for roff: backslashes, hyphens as minus signs (so that copied flags work), plain quotes. */
function esc(text) {
  return text
    .replace(/\\/g, "\\e")
    .replace(/-/g, "\\-")
    .replace(/'/g, "\\(aq")
    .replace(/`/g, "\\(ga")
    .replace(/[^\p{ASCII}]/gu, (c) => `\\[u${c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}]`);
}

/** Filled text as roff lines of at most 80 bytes where the words allow, none of them taken for a request. */
function textLine(text) {
  const lines = [];
  for (const word of esc(text).split(/ +/)) {
    if (lines.length > 0 && lines.at(-1).length + 1 + word.length <= 80) lines[lines.length - 1] += ` ${word}`;
    else lines.push(word);
  }
  return lines.map(guard).join("\n");
}

/** A roff line that starts with . or ' is a request: \& before it makes it text. */
function guard(line) {
  return /^[.']/.test(line) ? `\\&${line}` : line;
}

const bold = (text) => `\\fB${esc(text)}\\fR`;
const italic = (text) => `\\fI${esc(text)}\\fR`;

/** `--store <kind>` as `\fB\-\-store\fR \fIkind\fR`; `-h, --help` as two bold names. */
function optionTerm(node) {
  const names = [node.short, node.long].filter(Boolean).map(bold).join(", ");
  if (!node.valueName) return names;
  return node.optionalValue ? `${names} [${italic(node.valueName)}]` : `${names} ${italic(node.valueName)}`;
}

/** The command in bold and commander's usage after it: `\fBcert\-retriever completion\fR [options] <shell>`. */
function usageLine(node) {
  const rest = node.command.usage();
  return `${bold(["cert-retriever", ...node.path].join(" "))}${rest ? ` ${esc(rest)}` : ""}`;
}

/** What a command prints after its options (examples, notes), without the exit-code table the page has once. */
function afterHelp(command) {
  let text = "";
  command.emit("afterHelp", { error: false, command, write: (s) => (text += s) });
  return text.replace(/^EXIT CODES\n(?:[ \t]+\S.*\n?)*/m, "").replace(/\s+$/, "");
}

/**
 * Help text as roff: a block of unindented lines is a paragraph (refilled); a capitalised heading
 * (EXAMPLES) is bold; indented lines (examples, tables) are kept as they are.
 */
function prose(text) {
  const out = [];
  for (const block of text.split(/\n\s*\n/)) {
    const lines = block.split("\n").filter((l) => l.trim() !== "");
    if (lines.length === 0) continue;
    if (/^[A-Z][A-Z]+(?: [A-Z]+)*(?: \(.*\))?$/.test(lines[0])) {
      out.push(".PP", `\\fB${esc(lines.shift())}\\fR`);
      if (lines.length === 0) continue;
      out.push(".br");
    } else {
      out.push(".PP");
    }
    if (lines.every((l) => !/^\s/.test(l))) {
      out.push(textLine(lines.join(" ")));
      continue;
    }
    const indent = Math.min(...lines.map((l) => /^ */.exec(l)[0].length));
    out.push(".RS 2", ".nf", ...lines.map((l) => guard(esc(l.slice(indent)))), ".fi", ".RE");
  }
  return out;
}

function commandSection(node) {
  const { command } = node;
  const help = command.createHelp();
  const lines = [
    `.SS "${esc([...node.path].join(" "))}"`,
    usageLine(node),
    ".PP",
    textLine(command.description() || command.summary()),
  ];
  for (const argument of help.visibleArguments(command)) {
    lines.push(".TP", italic(argument.name()), textLine(help.argumentDescription(argument)));
  }
  for (const option of node.options.filter((o) => o.long !== "--help")) {
    lines.push(".TP", optionTerm(option), textLine(help.optionDescription(option.option)));
  }
  lines.push(...prose(afterHelp(command)));
  return lines;
}

const program = await loadProgram();
const root = commandTree(program);
const nodes = allNodes(root);
const rootHelp = program.createHelp();
const epoch = process.env.SOURCE_DATE_EPOCH ? new Date(Number(process.env.SOURCE_DATE_EPOCH) * 1000) : new Date();
const page = [
  `.\\" Generated by scripts/man.mjs from the program's commands and options; do not edit.`,
  `.TH CERT\\-RETRIEVER 1 ${epoch.toISOString().slice(0, 10)} "cert\\-retriever ${esc(pkg.version)}" "User Commands"`,
  // Names and flags are not hyphenated, and lines are not stretched to the margin.
  ".nh",
  ".ad l",
  ".SH NAME",
  `cert\\-retriever \\- ${esc(
    program
      .description()
      .replace(/^./, (c) => c.toLowerCase())
      .replace(/\.$/, ""),
  )}`,
  ".SH SYNOPSIS",
  ".nf",
  ...nodes.filter((n) => n.path.length === 0 || (n.commands.length === 0 && !n.implicitHelp)).map(usageLine),
  `${bold("cert-retriever help")} ${esc("[command]")}`,
  ".fi",
  ".SH DESCRIPTION",
  textLine(pkg.description),
  ".PP",
  textLine(
    "Each command is described under COMMANDS below, with its options; 'cert-retriever COMMAND --help' prints the same.",
  ),
  ".SH OPTIONS",
  ...root.options.flatMap((o) => [".TP", optionTerm(o), textLine(rootHelp.optionDescription(o.option))]),
  ".SH COMMANDS",
  "Every command also takes",
  `${bold("-h")}, ${bold("--help")}.`,
  ...nodes.filter((n) => n.path.length > 0 && !(n.implicitHelp && n.path.length > 1)).flatMap(commandSection),
  ".SH ENVIRONMENT",
  textLine(
    "A flag wins over its variable, which wins over the settings file (--config; without it the user's file, then the system's, see FILES), which wins over the option's default.",
  ),
  ...environment(),
  ".SH EXIT STATUS",
  textLine(
    "'cert-retriever check' has its own codes, for systemd's ExecCondition= (see check above). The other commands:",
  ),
  ...EXIT_CODE_MEANINGS.flatMap(([code, meaning]) => [".TP", bold(String(code)), textLine(meaning)]),
  ".SH FILES",
  ...files(),
  ".SH SEE ALSO",
  ".BR openssl (1),",
  ".BR mosquitto_pub (1),",
  ".BR systemd.service (5),",
  ".BR systemd.exec (5),",
  ".BR systemd\\-creds (1)",
  ".PP",
  textLine(
    "The package's README.md and docs/ (in cert-retriever/ under the global node_modules) have the details: platforms, profiles, the lab, the security choices.",
  ),
];

/** The CERT_RETRIEVER_* variables of the options, and the others the program reads. */
function environment() {
  const byVariable = new Map();
  for (const node of nodes) {
    for (const o of node.options.filter((o) => o.option.envVar)) {
      const entry = byVariable.get(o.option.envVar) ?? { long: o.long, commands: [] };
      entry.commands.push(node.path.join(" "));
      byVariable.set(o.option.envVar, entry);
    }
  }
  // Every variable the help names must be documented here.
  const mentioned = new Set();
  for (const node of nodes) {
    const text = [afterHelp(node.command), node.command.description(), ...node.options.map((o) => o.description)].join(
      "\n",
    );
    for (const m of text.matchAll(/\b(CERT_RETRIEVER_[A-Z0-9_]+)/g)) mentioned.add(m[1]);
  }
  const missing = [...mentioned].filter((v) => !byVariable.has(v) && !OTHER_VARIABLES.some(([name]) => name === v));
  if (missing.length > 0)
    throw new Error(
      `scripts/man.mjs: the help names ${missing.join(", ")}, which the man page does not describe: add to OTHER_VARIABLES`,
    );
  return [
    ...[...byVariable]
      .sort(([a], [b]) => a.localeCompare(b))
      .flatMap(([variable, { long, commands }]) => [
        ".TP",
        bold(variable),
        `Sets ${bold(long)} when the flag is not given (${esc(commands.join(", "))}).`,
      ]),
    ...OTHER_VARIABLES.flatMap(([variable, text]) => [".TP", bold(variable), textLine(text)]),
  ];
}

function files() {
  const option = (name) => nodes.find((n) => n.path[0] === "enroll")?.options.find((o) => o.long === name)?.option;
  const outDefault = option("--out")?.defaultValue ?? "./certs";
  const caDefault = option("--ca-name")?.defaultValue ?? "IOTmidCA";
  const out = italic("out");
  /** `term` and `text` are roff already. */
  const entry = (term, text) => [".TP", term, text];
  return [
    ...entry(
      italic("$XDG_CONFIG_HOME/cert-retriever/config.json"),
      textLine(
        "The user's settings file (JSON, the options' names in camelCase; ~/.config/cert-retriever/config.json when XDG_CONFIG_HOME is unset), read when it exists and --config names no other; it wins over the system's.",
      ),
    ),
    ...entry(
      italic("/etc/cert-retriever/config.json"),
      textLine("The system's settings file, read when it exists and --config names no other."),
    ),
    ...entry(
      italic("/etc/cert-retriever/cert-retriever.env"),
      textLine("Variables for the systemd unit the package ships (systemd/cert-retriever.service)."),
    ),
    ...entry(
      `${out}/${italic("device-id")}.key`,
      `The device's private key, PKCS#8 PEM, mode 0600 (with ${bold("--store files")};\n${out} is ${bold("--out")}, by default ${esc(outDefault)}, mode 0700).`,
    ),
    ...entry(`${out}/${italic("device-id")}.crt`, "The device's certificate, PEM."),
    ...entry(
      `${out}/${italic("ca-name")}.crt`,
      `The CA certificate, PEM (${bold("--ca-name")}, by default ${esc(caDefault)}).`,
    ),
    ...entry(
      `${out}/.cert\\-retriever.lock`,
      "Keeps two runs apart; one left by a process that is gone is taken over.",
    ),
    ...entry(italic("$CREDENTIALS_DIRECTORY/password"), "The platform password, as a systemd credential."),
    ...entry(
      italic("$CREDENTIALS_DIRECTORY/token"),
      textLine("A token from 'cert-retriever login', as a systemd credential."),
    ),
  ];
}

await mkdir(new URL("man/", dist), { recursive: true });
await writeFile(out, `${page.join("\n")}\n`);
console.error(`built ${out.pathname}`);
