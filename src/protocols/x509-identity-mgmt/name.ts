/** The plug-in's canonical name, and its name for people (apart, so that they load without the client). */
export const X509_IDENTITY_MGMT = "x509-identity-mgmt";
export const X509_IDENTITY_MGMT_TITLE = "x509-identity-mgmt (dojot >= v0.5)";
