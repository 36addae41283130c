import { Argument, Command, type Option } from "commander";
import { usageError } from "../../errors.js";
import { cliIo } from "../io.js";

/**
 * `cert-retriever completion bash|zsh|fish`: a completion script for that shell, made at run time
 * from the program's own commands and options (the ones --help shows), so it cannot drift from
 * them. Light on purpose: commander only, nothing that the commands load to do their work.
 */
export function completionCommand(state: { exitCode: number }): Command {
  // The choices are for --help and for completing the word itself; they are set without commander's
  // check, so that an unknown shell is our usage error (exit 2) in one sentence.
  const shellArgument = new Argument("<shell>", "the shell");
  shellArgument.argChoices = [...SHELLS];
  return new Command("completion")
    .summary("print a completion script for bash, zsh or fish on stdout")
    .description(
      "Prints a completion script for the shell on stdout: subcommands, their options, option values from fixed choices, and file names where an option takes a file or directory.",
    )
    .addArgument(shellArgument)
    .addHelpText(
      "after",
      `
INSTALL
  bash:  cert-retriever completion bash > /etc/bash_completion.d/cert-retriever
         (or ~/.local/share/bash-completion/completions/cert-retriever; for this shell only:
         source <(cert-retriever completion bash))
  zsh:   cert-retriever completion zsh > "\${fpath[1]}/_cert-retriever"   (then start a new shell)
  fish:  cert-retriever completion fish > ~/.config/fish/completions/cert-retriever.fish
`,
    )
    .action((shell: string, _flags: unknown, command: Command) => {
      if (!(SHELLS as string[]).includes(shell)) {
        throw usageError(
          `unknown shell '${shell}': completion scripts are made for ${SHELLS.slice(0, -1).join(", ")} and ${SHELLS.at(-1)}`,
        );
      }
      cliIo().stdout.write(GENERATORS[shell as Shell](commandTree(rootOf(command))));
      state.exitCode = 0;
    });
}

type Shell = "bash" | "zsh" | "fish";
const SHELLS: Shell[] = ["bash", "zsh", "fish"];
const GENERATORS: Record<Shell, (root: CommandNode) => string> = { bash: bashScript, zsh: zshScript, fish: fishScript };

/** What an option's value is, for completing it. */
type ValueKind = "none" | "any" | "choice" | "file" | "dir" | "user";

/** One option of one command, as completion and the man page need it. */
interface OptionNode {
  option: Option;
  /** `--store`; undefined for a short-only option. */
  long?: string;
  /** `-h`. */
  short?: string;
  description: string;
  value: ValueKind;
  /** Whether the value may be left out (`[value]`). */
  optionalValue: boolean;
  /** The value's name, `kind` in `--store <kind>`. */
  valueName?: string;
  choices: readonly string[];
  /** Whether the option may be given more than once. */
  repeatable: boolean;
}

/** One command of the tree (the program itself at the root). */
interface CommandNode {
  command: Command;
  name: string;
  /** The names from the program's first subcommand down: [] for the program, ["enroll"] for a command. */
  path: string[];
  summary: string;
  options: OptionNode[];
  commands: CommandNode[];
  /** commander's own `help [command]`, which takes its siblings' names. */
  implicitHelp: boolean;
  args: { name: string; required: boolean; variadic: boolean; description: string; choices: readonly string[] }[];
}

/** The program that `command` belongs to. */
function rootOf(command: Command): Command {
  let root = command;
  while (root.parent) root = root.parent;
  return root;
}

/** The visible commands and options under `command`, as its --help lists them. @public scripts/man.mjs imports it from dist/ (where knip does not look). */
export function commandTree(command: Command, path: string[] = [], implicitHelp = false): CommandNode {
  const help = command.createHelp();
  return {
    command,
    name: command.name(),
    path,
    summary: command.summary() || command.description().split(/(?<=\.)\s/)[0]!,
    options: help.visibleOptions(command).map(optionNode),
    // commander lists its implicit `help` command, which is not among `.commands`.
    commands: help
      .visibleCommands(command)
      .map((sub) => commandTree(sub, [...path, sub.name()], !command.commands.includes(sub))),
    implicitHelp,
    args: command.registeredArguments.map((a) => ({
      name: a.name(),
      required: a.required,
      variadic: a.variadic,
      description: a.description,
      choices: a.argChoices ?? [],
    })),
  };
}

function optionNode(option: Option): OptionNode {
  const takesValue = option.required || option.optional;
  // `--fault <route:kind[:times]>`: the name runs to the last > (or ]).
  const named = /<(.+)>|\[(.+)\]/.exec(option.flags);
  const valueName = (named?.[1] ?? named?.[2])?.replace(/\.\.\.$/, "");
  const choices = option.argChoices ?? [];
  let value: ValueKind = "none";
  if (takesValue) {
    if (choices.length > 0) value = "choice";
    else if (valueName === "file") value = "file";
    else if (valueName === "dir") value = "dir";
    else if (valueName === "user") value = "user";
    else value = "any";
  }
  return {
    option,
    long: option.long,
    short: option.short,
    description: option.description,
    value,
    optionalValue: option.optional,
    valueName,
    choices,
    // commander has no flag for "repeatable": a variadic value, or the description says so.
    repeatable: option.variadic || /\brepeatable\b/.test(option.description),
  };
}

/** Every command of the tree, the program first. @public scripts/man.mjs imports it from dist/ (where knip does not look). */
export function allNodes(node: CommandNode): CommandNode[] {
  return [node, ...node.commands.flatMap(allNodes)];
}

/** The command names that may follow `node` on the command line (for `help`, its siblings). */
function nextWords(node: CommandNode, parent?: CommandNode): string[] {
  if (node.implicitHelp && parent) return parent.commands.filter((c) => !c.implicitHelp).map((c) => c.name);
  return node.commands.map((c) => c.name);
}

function flagsOf(option: OptionNode): string[] {
  return [option.short, option.long].filter((f): f is string => f !== undefined);
}

function withParents(root: CommandNode): { node: CommandNode; parent?: CommandNode }[] {
  const out: { node: CommandNode; parent?: CommandNode }[] = [];
  const walk = (node: CommandNode, parent?: CommandNode) => {
    out.push({ node, parent });
    for (const c of node.commands) walk(c, node);
  };
  walk(root);
  return out;
}

/** A word in single quotes for bash and zsh. */
function shq(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

function header(root: CommandNode, shell: Shell, install: string): string {
  return [
    `# ${shell} completion for ${root.name}, generated by \`${root.name} completion ${shell}\`${root.command.version() ? ` (${root.name} ${root.command.version()})` : ""}.`,
    `# Install: ${install}`,
    "",
  ].join("\n");
}

function bashScript(root: CommandNode): string {
  const fn = `_${root.name.replace(/\W/g, "_")}`;
  const nodes = withParents(root);
  const key = (node: CommandNode) => node.path.join(" ");
  const caseLines = (entries: [string, string][]) =>
    entries.map(([pattern, body]) => `    ${pattern}) ${body} ;;`).join("\n");
  const valueOptions = nodes.flatMap(({ node }) =>
    node.options.filter((o) => o.value !== "none").flatMap((o) => flagsOf(o).map((f) => shq(`${key(node)}|${f}`))),
  );
  const valueCases: [string, string][] = [];
  for (const { node } of nodes) {
    for (const o of node.options.filter((o) => o.value !== "none" && o.value !== "any")) {
      const pattern = flagsOf(o)
        .map((f) => shq(`${key(node)}|${f}`))
        .join("|");
      const body =
        o.value === "choice"
          ? `COMPREPLY=($(compgen -W "$(printf '%s\\n' ${o.choices.map(shq).join(" ")})" -- "$cur"))`
          : o.value === "user"
            ? `COMPREPLY=($(compgen -u -- "$cur"))`
            : `compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -${o.value === "dir" ? "d" : "f"} -- "$cur"))`;
      valueCases.push([pattern, body]);
    }
  }
  return `${header(root, "bash", `${root.name} completion bash > /etc/bash_completion.d/${root.name}`)}
${fn}_commands() {
  case "$1" in
${caseLines(nodes.filter(({ node, parent }) => nextWords(node, parent).length > 0).map(({ node, parent }) => [shq(key(node)), `echo ${shq(nextWords(node, parent).join(" "))}`]))}
  esac
}

# The fixed choices of positional argument $2 (0, 1, ...) of command $1.
${fn}_argument() {
  case "$1|$2" in
${caseLines(nodes.flatMap(({ node }) => node.args.flatMap((a, i) => (a.choices.length > 0 ? [[shq(`${key(node)}|${i}`), `echo ${shq(a.choices.join(" "))}`] as [string, string]] : []))))}
  esac
}

${fn}_options() {
  case "$1" in
${caseLines(nodes.filter(({ node }) => node.options.length > 0).map(({ node }) => [shq(key(node)), `echo ${shq(node.options.flatMap(flagsOf).join(" "))}`]))}
  esac
}

# Whether option $2 of command $1 takes a value (the next word).
${fn}_takes_value() {
  case "$1|$2" in
    ${valueOptions.length > 0 ? valueOptions.join("|") : "''"}) return 0 ;;
  esac
  return 1
}

${fn}() {
  local IFS=$'\\n' cur="\${COMP_WORDS[COMP_CWORD]}" path="" word next i opt="" position=0
  # The command being completed: the words that name subcommands, skipping options' values.
  for ((i = 1; i < COMP_CWORD; i++)); do
    word="\${COMP_WORDS[i]}"
    case "$word" in
      --*=* | -) ;;
      -*)
        if ${fn}_takes_value "$path" "$word"; then
          next="\${COMP_WORDS[i + 1]}"
          # --opt=value: bash splits it into --opt, =, value
          if [[ $next == "=" ]]; then ((i += 2)); else ((i += 1)); fi
        fi
        ;;
      *)
        if [[ " $(${fn}_commands "$path" | tr '\\n' ' ') " == *" $word "* ]]; then
          path="\${path:+$path }$word" position=0
        else
          ((position += 1))
        fi
        ;;
    esac
  done
  # The option whose value is being completed, if any: --opt value, --opt=value.
  local prev=""
  ((COMP_CWORD > 1)) && prev="\${COMP_WORDS[COMP_CWORD - 1]}"
  if [[ $cur == "=" ]] && ${fn}_takes_value "$path" "$prev"; then
    opt="$prev" cur=""
  elif [[ $prev == "=" ]] && ((COMP_CWORD > 2)) && ${fn}_takes_value "$path" "\${COMP_WORDS[COMP_CWORD - 2]}"; then
    opt="\${COMP_WORDS[COMP_CWORD - 2]}"
  elif [[ $cur == --*=* ]] && ${fn}_takes_value "$path" "\${cur%%=*}"; then
    opt="\${cur%%=*}" cur="\${cur#*=}"
  elif [[ $prev == -* ]] && ${fn}_takes_value "$path" "$prev"; then
    opt="$prev"
  fi
  COMPREPLY=()
  if [[ -n $opt ]]; then
    case "$path|$opt" in
${caseLines(valueCases).replace(/^ {4}/gm, "      ")}
    esac
    return 0
  fi
  local words
  words="$(${fn}_commands "$path")"
  [[ -z $words ]] && words="$(${fn}_argument "$path" "$position")"
  if [[ $cur == -* || -z $words ]]; then
    COMPREPLY=($(compgen -W "$(${fn}_options "$path" | tr ' ' '\\n')" -- "$cur"))
  else
    COMPREPLY=($(compgen -W "$(echo "$words" | tr ' ' '\\n')" -- "$cur"))
  fi
  return 0
}

complete -F ${fn} ${root.name}
`;
}

/** Text inside an _arguments `[...]` description, in single quotes. */
function zshDescription(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\[/g, "\\[").replace(/\]/g, "\\]").replace(/'/g, `'\\''`);
}

function zshOptionSpec(o: OptionNode): string {
  const description = `[${zshDescription(o.description)}]`;
  let value = "";
  if (o.value !== "none") {
    const action =
      o.value === "choice"
        ? `(${o.choices.map((c) => c.replace(/([\\() :'])/g, "\\$1")).join(" ")})`
        : o.value === "file"
          ? "_files"
          : o.value === "dir"
            ? "_files -/"
            : o.value === "user"
              ? "_users"
              : " ";
    value = `${o.optionalValue ? "::" : ":"}${(o.valueName ?? "value").replace(/[:\\']/g, " ")}:${action.replace(/'/g, `'\\''`)}`;
  }
  const forms = [
    o.short && `${o.short}${o.value === "none" ? "" : "+"}`,
    o.long && `${o.long}${o.value === "none" ? "" : "="}`,
  ].filter(Boolean) as string[];
  const star = o.repeatable ? "*" : "";
  if (forms.length === 1) return `'${star}${forms[0]}${description}${value}'`;
  // -h, --help: either form, not both.
  const exclusive = `(${flagsOf(o).join(" ")})`;
  return `'${o.repeatable ? "*" : exclusive}'{${forms.join(",")}}'${description}${value}'`;
}

function zshScript(root: CommandNode): string {
  const base = `_${root.name.replace(/\W/g, "_")}`;
  const fnOf = (node: CommandNode) => [base, ...node.path.map((p) => p.replace(/\W/g, "_"))].join("__");
  const functions = withParents(root).map(({ node, parent }) => {
    const fn = fnOf(node);
    const specs = node.options.map(zshOptionSpec);
    const words = nextWords(node, parent);
    if (words.length === 0) {
      node.args.forEach((a, i) => {
        const action =
          a.choices.length > 0 ? `(${a.choices.map((c) => c.replace(/([\\() :'])/g, "\\$1")).join(" ")})` : " ";
        specs.push(
          `'${a.variadic ? "*" : String(i + 1)}:${a.name.replace(/[:\\']/g, " ")}:${action.replace(/'/g, `'\\''`)}'`,
        );
      });
      return `${fn}() {\n  _arguments -s -S \\\n    ${specs.join(" \\\n    ")}\n}\n`;
    }
    const described = node.implicitHelp && parent ? parent.commands.filter((c) => !c.implicitHelp) : node.commands;
    const entries = described.map((c) => shq(`${c.name.replace(/:/g, "\\:")}:${c.summary}`)).join(" ");
    if (node.implicitHelp) {
      return `${fn}() {\n  local -a commands\n  commands=(${entries})\n  _describe -t commands 'command' commands\n}\n`;
    }
    const cases = node.commands.map((c) => `      ${shq(c.name)}) ${fnOf(c)} && ret=0 ;;`).join("\n");
    return `${fn}() {
  local curcontext="$curcontext" state state_descr line ret=1
  typeset -A opt_args
  _arguments -C \\
    ${[...specs, `'1: :->command'`, `'*:: :->argument'`].join(" \\\n    ")} && ret=0
  case $state in
    command)
      local -a commands
      commands=(${entries})
      _describe -t commands 'command' commands && ret=0
      ;;
    argument)
      curcontext="\${curcontext%:*:*}:${[root.name, ...node.path].join("-")}-$words[1]:"
      case $words[1] in
${cases}
      esac
      ;;
  esac
  return ret
}
`;
  });
  return `#compdef ${root.name}
${header(root, "zsh", `${root.name} completion zsh > "\${fpath[1]}/_${root.name}"`)}
${functions.join("\n")}
if [[ $funcstack[1] == _${root.name} ]]; then
  ${base} "$@"
else
  compdef ${base} ${root.name}
fi
`;
}

/** A word in single quotes for fish. */
function fishq(text: string): string {
  return `'${text.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}

function fishScript(root: CommandNode): string {
  const name = root.name;
  const fn = `__${name.replace(/\W/g, "_")}`;
  const nodes = withParents(root);
  const key = (node: CommandNode) => node.path.join(" ");
  const commands = nodes.flatMap(({ node }) => node.commands.map((c) => fishq(`${key(node)}|${c.name}`)));
  const valueOptions = nodes.flatMap(({ node }) =>
    node.options.filter((o) => o.value !== "none").flatMap((o) => flagsOf(o).map((f) => fishq(`${key(node)}|${f}`))),
  );
  const lines: string[] = [];
  for (const { node, parent } of nodes) {
    const at = `-n ${fishq(`${fn}_at ${fishq(key(node))}`)}`;
    const described = node.implicitHelp && parent ? parent.commands.filter((c) => !c.implicitHelp) : node.commands;
    for (const c of described) lines.push(`complete -c ${name} ${at} -a ${fishq(c.name)} -d ${fishq(c.summary)}`);
    for (const a of node.args.filter((a) => a.choices.length > 0))
      lines.push(`complete -c ${name} ${at} -a ${fishq(a.choices.join(" "))} -d ${fishq(a.description || a.name)}`);
    for (const o of node.options) {
      const flags = [o.short && `-s ${o.short.slice(1)}`, o.long && `-l ${o.long.slice(2)}`].filter(Boolean).join(" ");
      const value =
        o.value === "none"
          ? ""
          : o.value === "choice"
            ? ` -x -a ${fishq(o.choices.join(" "))}`
            : o.value === "file"
              ? " -r -F"
              : o.value === "dir"
                ? ` -x -a '(__fish_complete_directories (commandline -ct) "")'`
                : o.value === "user"
                  ? " -x -a '(__fish_complete_users)'"
                  : " -x";
      lines.push(`complete -c ${name} ${at} ${flags}${value} -d ${fishq(o.description)}`);
    }
  }
  return `${header(root, "fish", `${name} completion fish > ~/.config/fish/completions/${name}.fish`)}
# "path|subcommand", and "path|--option" for the options that take a value.
set -g ${fn}_commands ${commands.join(" ")}
set -g ${fn}_value_options ${valueOptions.join(" ")}

# The (sub)command being completed: "", "enroll", "lab device".
function ${fn}_path
    set -l words (commandline -opc)
    set -e words[1]
    set -l path ''
    set -l skip 0
    for word in $words
        if test $skip -eq 1
            set skip 0
            continue
        end
        switch $word
            case '--*=*'
            case '-*'
                if contains -- "$path|$word" $${fn}_value_options
                    set skip 1
                end
            case '*'
                if contains -- "$path|$word" $${fn}_commands
                    set path (string trim -- "$path $word")
                end
        end
    end
    echo $path
end

function ${fn}_at
    set -l path (${fn}_path)
    test "$path" = "$argv[1]"
end

# No file names unless an option takes a file.
complete -c ${name} -f
${lines.join("\n")}
`;
}
