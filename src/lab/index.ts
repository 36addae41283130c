/** The lab platform, for programs and benchmarks (`cert-retriever/lab`): kept out of the library's main entry, which a device loads. */
export { startLab, setDevice, type LabOptions, type RunningLab } from "./server.js";
export { softwareCrypto } from "../crypto/provider.js";
