/** The plug-in's canonical name (apart from the plug-in, so that the client can use it without a cycle). */
export const EJBCA_REST = "ejbca-rest";
/** Its name for people. */
export const EJBCA_REST_TITLE = "EJBCA-REST (dojot <= v0.4)";
