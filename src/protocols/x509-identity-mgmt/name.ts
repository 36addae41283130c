/** The plug-in's canonical name (apart from the plug-in, so that the client can use it without a cycle). */
export const X509_IDENTITY_MGMT = "x509-identity-mgmt";
/** Its name for people. */
export const X509_IDENTITY_MGMT_TITLE = "x509-identity-mgmt (dojot >= v0.5)";
