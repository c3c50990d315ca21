// Validates ServiceMonitors, PodMonitors and PrometheusRules (a JSON array
// in the file given) against the prometheus-operator CRD schemas shipped in
// the npm package @kubernetes-models/prometheus-operator (installed into
// .tools/node by scripts/chart-tools). Exits 1 on the first invalid object.
import { readFileSync } from 'node:fs';
import { ServiceMonitor, PodMonitor, PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';

const models = { ServiceMonitor, PodMonitor, PrometheusRule };
const objects = JSON.parse(readFileSync(process.argv[2], 'utf8'));
let failed = 0;
for (const obj of objects) {
  const name = `${obj.kind}/${obj.metadata?.name}`;
  try {
    if (obj.apiVersion !== 'monitoring.coreos.com/v1') throw new Error(`apiVersion ${obj.apiVersion}`);
    const Model = models[obj.kind];
    if (!Model) throw new Error('unknown kind');
    new Model(obj).validate();
    console.log(`valid   ${name}`);
  } catch (e) {
    console.log(`INVALID ${name}: ${e.message}`);
    failed += 1;
  }
}
if (objects.length === 0) { console.log('no monitoring objects to validate'); failed += 1; }
process.exit(failed ? 1 : 0);
