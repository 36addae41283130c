/** The plug-in's canonical name, and its name for people (apart, so that they load without the client). */
export const EJBCA_REST = "ejbca-rest";
export const EJBCA_REST_TITLE = "EJBCA-REST (dojot <= v0.4)";
