/** The lab platform, for programs and benchmarks (`cert-retriever/lab`): kept out of the library's main entry, which a device loads. */
export { startLab, setDevice, readEstIssued, type LabApi, type LabOptions, type RunningLab, type EstLabOptions, type EstCsrAttrs, type EstIssued, type EstPki } from "./server.js";
export { softwareCrypto } from "../crypto/provider.js";
