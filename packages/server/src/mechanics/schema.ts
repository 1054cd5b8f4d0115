/**
 * Zod building blocks shared by the mechanic option schemas. They come from the config
 * module so that a name accepted in `nexus.yaml` is accepted by every mechanic alike.
 */
export {
  credentialRef as credentialName,
  credentialField as fieldName,
  headerName,
  headerTemplate,
} from '../config/auth-schemas.js';
