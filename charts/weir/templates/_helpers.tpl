{{/*
Names. The full name is the release name, plus "-weir" unless the release name contains "weir"
(release "weir" → "weir"); Kubernetes names are at most 63 characters.
*/}}
{{- define "weir.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "weir.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "weir.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object but the metrics Service. */}}
{{- define "weir.labels" -}}
{{ include "weir.commonLabels" . }}
app.kubernetes.io/component: controller
{{- end }}

{{- define "weir.commonLabels" -}}
helm.sh/chart: {{ include "weir.chart" . }}
app.kubernetes.io/name: {{ include "weir.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: weir
{{- end }}

{{/* What selects the controller's pods (immutable in a Deployment/DaemonSet: never change it). */}}
{{- define "weir.selectorLabels" -}}
app.kubernetes.io/name: {{ include "weir.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{/* What the ServiceMonitor selects: the metrics Service only. */}}
{{- define "weir.metricsSelectorLabels" -}}
app.kubernetes.io/name: {{ include "weir.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: metrics
{{- end }}

{{- define "weir.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "weir.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "weir.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The namespace of the leader-election Lease (and of its Role). */}}
{{- define "weir.electionNamespace" -}}
{{- default .Release.Namespace .Values.controller.config.electionNamespace }}
{{- end }}

{{/*
The controller ConfigMap the chart creates (data: controller.configMap) and passes as --configmap:
the full name, in the release namespace.
*/}}
{{- define "weir.configMapName" -}}
{{- include "weir.fullname" . }}
{{- end }}

{{/* NAMESPACE/NAME passed as --publish-service, or empty when weir gets none. */}}
{{- define "weir.publishService" -}}
{{- $p := .Values.controller.publishService }}
{{- if and $p.enabled (not .Values.controller.config.publishStatusAddress) }}
{{- if $p.pathOverride }}
{{- $p.pathOverride }}
{{- else if .Values.service.enabled }}
{{- printf "%s/%s" .Release.Namespace (include "weir.fullname" .) }}
{{- end }}
{{- end }}
{{- end }}

{{/* host:port of a listener: "0.0.0.0:8080", "[::]:8080". Argument: (list bindAddress port). */}}
{{- define "weir.listenAddr" -}}
{{- $host := index . 0 }}
{{- if contains ":" $host }}
{{- printf "[%s]:%d" $host (int (index . 1)) }}
{{- else }}
{{- printf "%s:%d" $host (int (index . 1)) }}
{{- end }}
{{- end }}

{{/*
A duration made of <integer><unit> parts (ms, s, m, h; "1m30s"), in milliseconds. The schema
restricts shutdownDelay and shutdownTimeout to this form so that the grace period can be computed.
Argument: (list name value).
*/}}
{{- define "weir.durationMs" -}}
{{- $name := index . 0 }}
{{- $value := index . 1 | toString }}
{{- if not (regexMatch "^([0-9]+(ms|s|m|h))+$" $value) }}
{{- fail (printf "%s %q: use whole numbers with the units ms, s, m or h (for example 5s, 90s, 1m30s)" $name $value) }}
{{- end }}
{{- $factors := dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000 }}
{{- $total := 0 }}
{{- range regexFindAll "[0-9]+(ms|s|m|h)" $value -1 }}
{{- $unit := regexFind "[a-z]+$" . }}
{{- $count := trimSuffix $unit . | atoi }}
{{- $total = add $total (mul $count (get $factors $unit)) }}
{{- end }}
{{- $total }}
{{- end }}

{{/*
terminationGracePeriodSeconds: weir drains for up to shutdownDelay + shutdownTimeout after SIGTERM;
the kubelet must not kill it before. Default: that sum (rounded up) plus 10 s.
*/}}
{{- define "weir.terminationGracePeriodSeconds" -}}
{{- $c := .Values.controller.config }}
{{- $delayMs := include "weir.durationMs" (list "controller.config.shutdownDelay" $c.shutdownDelay) | atoi }}
{{- $timeoutMs := include "weir.durationMs" (list "controller.config.shutdownTimeout" $c.shutdownTimeout) | atoi }}
{{- $drain := div (add $delayMs $timeoutMs 999) 1000 }}
{{- $grace := .Values.controller.terminationGracePeriodSeconds }}
{{- if kindIs "invalid" $grace }}
{{- add $drain 10 }}
{{- else if le (int $grace) (int $drain) }}
{{- fail (printf "controller.terminationGracePeriodSeconds (%d) must be larger than controller.config.shutdownDelay + controller.config.shutdownTimeout (%s + %s = %ds), or the kubelet kills weir while it drains; raise it or leave it null to compute it" (int $grace) $c.shutdownDelay $c.shutdownTimeout (int $drain)) }}
{{- else }}
{{- int $grace }}
{{- end }}
{{- end }}

{{/* weir's arguments, one "--flag=value" per line of a YAML list. */}}
{{- define "weir.args" -}}
{{- $c := .Values.controller.config }}
{{- $ports := .Values.controller.containerPorts }}
{{- $bind := .Values.controller.bindAddress }}
{{- $args := list }}
{{- $args = append $args (printf "--ingress-class=%s" .Values.ingressClass.name) }}
{{- $args = append $args (printf "--controller-name=%s" .Values.ingressClass.controllerName) }}
{{- if $c.watchNamespace }}
{{- $args = append $args (printf "--watch-namespace=%s" $c.watchNamespace) }}
{{- end }}
{{- if $c.watchIngressWithoutClass }}
{{- $args = append $args "--watch-ingress-without-class" }}
{{- end }}
{{- $args = append $args (printf "--endpoints-api=%s" $c.endpointsApi) }}
{{- $publish := include "weir.publishService" . }}
{{- if $c.publishStatusAddress }}
{{- $args = append $args (printf "--publish-status-address=%s" (join "," $c.publishStatusAddress)) }}
{{- else if $publish }}
{{- $args = append $args (printf "--publish-service=%s" $publish) }}
{{- end }}
{{- $args = append $args (printf "--election-id=%s" $c.electionId) }}
{{- $args = append $args (printf "--election-namespace=%s" (include "weir.electionNamespace" .)) }}
{{- $args = append $args (printf "--election-lease-duration=%s" $c.electionLeaseDuration) }}
{{- $args = append $args (printf "--election-retry-period=%s" $c.electionRetryPeriod) }}
{{- $args = append $args (printf "--http-addr=%s" (include "weir.listenAddr" (list $bind $ports.http))) }}
{{- $args = append $args (printf "--https-addr=%s" (include "weir.listenAddr" (list $bind $ports.https))) }}
{{- $args = append $args (printf "--admin-addr=%s" (include "weir.listenAddr" (list $bind $ports.admin))) }}
{{- if $c.defaultSslCertificate }}
{{- $args = append $args (printf "--default-ssl-certificate=%s" $c.defaultSslCertificate) }}
{{- end }}
{{- $args = append $args (printf "--configmap=%s/%s" .Release.Namespace (include "weir.configMapName" .)) }}
{{- with .Values.controller.defaultBackendService }}
{{- $args = append $args (printf "--default-backend-service=%s" .) }}
{{- end }}
{{- $args = append $args (printf "--http-redirect-code=%d" (int $c.httpRedirectCode)) }}
{{- $args = append $args (printf "--https-port-external=%d" (int $c.httpsPortExternal)) }}
{{- $args = append $args (printf "--hsts=%t" $c.hsts) }}
{{- $args = append $args (printf "--hsts-max-age=%s" $c.hstsMaxAge) }}
{{- if $c.hstsIncludeSubdomains }}
{{- $args = append $args "--hsts-include-subdomains" }}
{{- end }}
{{- $args = append $args (printf "--tls-handshake-timeout=%s" $c.tlsHandshakeTimeout) }}
{{- if $c.enableSslPassthrough }}
{{- $args = append $args "--enable-ssl-passthrough" }}
{{- end }}
{{- $args = append $args (printf "--upstream-connect-timeout=%s" $c.upstreamConnectTimeout) }}
{{- $args = append $args (printf "--upstream-send-timeout=%s" $c.upstreamSendTimeout) }}
{{- $args = append $args (printf "--upstream-response-timeout=%s" $c.upstreamResponseTimeout) }}
{{- $args = append $args (printf "--tunnel-idle-timeout=%s" $c.tunnelIdleTimeout) }}
{{- $args = append $args (printf "--upstream-keepalive-timeout=%s" $c.upstreamKeepaliveTimeout) }}
{{- $args = append $args (printf "--upstream-keepalive-connections=%d" (int $c.upstreamKeepaliveConnections)) }}
{{- $args = append $args (printf "--client-header-timeout=%s" $c.clientHeaderTimeout) }}
{{- $args = append $args (printf "--client-body-timeout=%s" $c.clientBodyTimeout) }}
{{- /* A number from a values file is a float64 to Helm: print it as whole bytes. */}}
{{- if kindIs "string" $c.proxyBodySize }}
{{- $args = append $args (printf "--proxy-body-size=%s" $c.proxyBodySize) }}
{{- else }}
{{- $args = append $args (printf "--proxy-body-size=%d" (int64 $c.proxyBodySize)) }}
{{- end }}
{{- if not (kindIs "invalid" $c.workerThreads) }}
{{- $args = append $args (printf "--worker-threads=%d" (int $c.workerThreads)) }}
{{- end }}
{{- $args = append $args (printf "--keepalive-timeout=%s" $c.keepaliveTimeout) }}
{{- $args = append $args (printf "--keepalive-park-after=%s" $c.keepaliveParkAfter) }}
{{- $args = append $args (printf "--max-request-header-size=%d" (int $c.maxRequestHeaderSize)) }}
{{- $args = append $args (printf "--max-headers=%d" (int $c.maxHeaders)) }}
{{- if $c.trustForwardedFrom }}
{{- $args = append $args (printf "--trust-forwarded-from=%s" (join "," $c.trustForwardedFrom)) }}
{{- end }}
{{- $args = append $args (printf "--shutdown-delay=%s" $c.shutdownDelay) }}
{{- $args = append $args (printf "--shutdown-timeout=%s" $c.shutdownTimeout) }}
{{- $args = append $args (printf "--log-level=%s" $c.logLevel) }}
{{- $args = append $args (printf "--log-format=%s" $c.logFormat) }}
{{- $args = append $args (printf "--access-log=%s" $c.accessLog) }}
{{- $args = append $args (printf "--request-metrics=%t" $c.requestMetrics) }}
{{- if $c.metricsPerHost }}
{{- $args = append $args "--metrics-per-host" }}
{{- end }}
{{- if $c.metricsPerPath }}
{{- $args = append $args "--metrics-per-path" }}
{{- end }}
{{- if $c.metricsStatusClasses }}
{{- $args = append $args "--metrics-status-classes" }}
{{- end }}
{{- if $c.metricsCompat }}
{{- $args = append $args (printf "--metrics-compat=%s" $c.metricsCompat) }}
{{- end }}
{{- /* A flag in extraArgs replaces the chart's (weir rejects a flag given twice), and
       --publish-status-address there replaces --publish-service (weir rejects both). */}}
{{- $replaced := dict }}
{{- range .Values.controller.extraArgs }}
{{- $name := regexReplaceAll "=.*$" . "" }}
{{- $_ := set $replaced $name true }}
{{- if eq $name "--publish-status-address" }}
{{- $_ := set $replaced "--publish-service" true }}
{{- end }}
{{- end }}
{{- range $args }}
{{- if not (hasKey $replaced (regexReplaceAll "=.*$" . "")) }}
- {{ . | quote }}
{{- end }}
{{- end }}
{{- range .Values.controller.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{/* The pods' affinity: controller.affinity, plus the podAntiAffinity preset unless it has its own. */}}
{{- define "weir.affinity" -}}
{{- $affinity := deepCopy .Values.controller.affinity }}
{{- $preset := .Values.controller.podAntiAffinity }}
{{- if and (eq .Values.controller.kind "Deployment") (ne $preset "none") (not (hasKey $affinity "podAntiAffinity")) }}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (include "weir.selectorLabels" . | fromYaml)) }}
{{- if eq $preset "hard" }}
{{- $_ := set $affinity "podAntiAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (list $term)) }}
{{- else }}
{{- $_ := set $affinity "podAntiAffinity" (dict "preferredDuringSchedulingIgnoredDuringExecution" (list (dict "weight" 100 "podAffinityTerm" $term))) }}
{{- end }}
{{- end }}
{{- if $affinity }}
{{- toYaml $affinity }}
{{- end }}
{{- end }}

{{/* Topology spread constraints, each with the pods' selector unless it has its own. */}}
{{- define "weir.topologySpreadConstraints" -}}
{{- $out := list }}
{{- range .Values.controller.topologySpreadConstraints }}
{{- $c := deepCopy . }}
{{- if not (hasKey $c "labelSelector") }}
{{- $_ := set $c "labelSelector" (dict "matchLabels" (include "weir.selectorLabels" $ | fromYaml)) }}
{{- end }}
{{- $out = append $out $c }}
{{- end }}
{{- if $out }}
{{- toYaml $out }}
{{- end }}
{{- end }}

{{/* Checks of combinations the schema cannot express; included by the workload template. */}}
{{- define "weir.validate" -}}
{{- $c := .Values.controller.config }}
{{- if and .Values.autoscaling.enabled (eq .Values.controller.kind "DaemonSet") }}
{{- fail "autoscaling.enabled needs controller.kind Deployment (a DaemonSet runs one pod per node)" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- if and .Values.service.externalTrafficPolicy (eq .Values.service.type "ClusterIP") }}
{{- fail "service.externalTrafficPolicy applies to service.type LoadBalancer or NodePort only" }}
{{- end }}
{{- if and (eq .Values.rbac.scope "namespace") (not $c.watchNamespace) }}
{{- fail "rbac.scope namespace needs controller.config.watchNamespace (weir watches all namespaces otherwise)" }}
{{- end }}
{{- if and .Values.networkPolicy.enabled .Values.networkPolicy.egress.enabled (not .Values.networkPolicy.egress.apiServerCIDRs) }}
{{- fail "networkPolicy.egress.enabled needs networkPolicy.egress.apiServerCIDRs (the API server's endpoint addresses: kubectl get endpoints kubernetes -n default)" }}
{{- end }}
{{- with .Values.controller.defaultBackendService }}
{{- if and $c.watchNamespace (ne (first (splitList "/" .)) $c.watchNamespace) }}
{{- fail (printf "controller.defaultBackendService %s is outside controller.config.watchNamespace %s: weir watches Services only there, so it would never find it (requests no rule serves would get 404)" . $c.watchNamespace) }}
{{- end }}
{{- end }}
{{- $ports := .Values.controller.containerPorts }}
{{- if or (eq (int $ports.http) (int $ports.https)) (eq (int $ports.http) (int $ports.admin)) (eq (int $ports.https) (int $ports.admin)) }}
{{- fail "controller.containerPorts http, https and admin must differ" }}
{{- end }}
{{- end }}
