/** The plug-in's canonical name (apart from the plug-in, so that the client can use it without a cycle). */
export const SCEP = "scep";
/** Its name for people. */
export const SCEP_TITLE = "SCEP (RFC 8894)";
