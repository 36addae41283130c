/**
 * The arrows that must never exist (the map in ARCHITECTURE.md); `npm test` runs
 * `depcruise src lab/src --config .dependency-cruiser.cjs`, so a wrong arrow fails the suite.
 */
module.exports = {
  forbidden: [
    { name: "no-circular", severity: "error", comment: "no import cycle anywhere", from: {}, to: { circular: true } },
    {
      name: "library-not-to-cli",
      severity: "error",
      comment: "the library knows no command line: the CLI maps reasons to flags, exit codes and hints",
      from: { path: "^src/", pathNot: "^src/cli/" },
      to: { path: "^src/cli/" },
    },
    {
      name: "protocols-not-to-flows",
      severity: "error",
      comment: "a protocol offers capabilities; it does not know who drives it",
      from: { path: "^src/protocols/" },
      to: { path: "^src/flows/" },
    },
    {
      name: "flows-not-to-a-protocol",
      severity: "error",
      comment: "flows ask for a capability, never for a protocol by name: only the registry and the capability types",
      from: { path: "^src/flows/" },
      to: { path: "^src/protocols/", pathNot: "^src/protocols/(types|registry)\\.ts$" },
    },
    {
      name: "keys-not-to-store",
      severity: "error",
      comment: "a key store keeps its own lock and journal",
      from: { path: "^src/keys/" },
      to: { path: "^src/store/" },
    },
    {
      name: "transport-not-to-protocols",
      severity: "error",
      comment: "HTTP speaks HTTP; the protocol names the platform in its reasons",
      from: { path: "^src/transport/" },
      to: { path: "^src/(protocols|flows)/" },
    },
    {
      name: "product-not-to-lab-or-tests",
      severity: "error",
      comment: "the device runs only what it needs; tests inject faults through interfaces",
      from: { path: "^(src|bin)/" },
      to: { path: "^(lab|test)/|cert-retriever-lab" },
    },
    {
      name: "commands-not-to-commands",
      severity: "error",
      comment: "shared behaviour lives in a flow or a cli helper",
      from: { path: "^src/cli/commands/([^/]+)\\.ts$" },
      to: { path: "^src/cli/commands/", pathNot: "^src/cli/commands/$1\\.ts$" },
    },
    {
      name: "lab-through-the-entry",
      severity: "error",
      comment: "the lab uses the agent only through its package entry ('cert-retriever'), never by a path into src/",
      from: { path: "^lab/src/" },
      to: { path: "^src/" },
    },
  ],
  options: {
    // The agent's own build (dist/, lab/dist/) is where "cert-retriever" resolves: an end, not a tree to walk.
    doNotFollow: { path: ["node_modules", "^dist/", "^lab/dist/"] },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: {
      exportsFields: ["exports"],
      conditionNames: ["import", "require", "node", "default", "types"],
    },
  },
};
