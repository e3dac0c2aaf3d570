{{/*
Indents a block that may be empty, without leaving a blank line when it is:
(list 6 (include "lbaas.scheduling" ...)).
*/}}
{{- define "lbaas.nindent" -}}
{{- $text := trim (index . 1) -}}
{{- if $text }}{{ $text | nindent (index . 0) }}{{ end -}}
{{- end -}}

{{/* The chart name, or nameOverride. */}}
{{- define "lbaas.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The prefix of every resource name: fullnameOverride, else "<release>-<chart>" (or just the
release name when it already contains the chart name). Kept short enough for the suffixes the
chart appends ("-secret-key" is the longest) to stay within 63 characters.
*/}}
{{- define "lbaas.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "lbaas.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every resource. */}}
{{- define "lbaas.labels" -}}
helm.sh/chart: {{ include "lbaas.chart" . }}
{{ include "lbaas.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: lbaas
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The labels every selector of this release uses. */}}
{{- define "lbaas.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lbaas.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of one component: (dict "ctx" $ "component" "api"). */}}
{{- define "lbaas.componentLabels" -}}
{{ include "lbaas.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "api"). */}}
{{- define "lbaas.componentSelectorLabels" -}}
{{ include "lbaas.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The image reference. */}}
{{- define "lbaas.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) -}}
{{- end -}}
{{- end -}}

{{- define "lbaas.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "lbaas.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* imagePullSecrets, indented for a pod spec. */}}
{{- define "lbaas.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Secret names: chart-made unless an existing one is named. */}}
{{- define "lbaas.databaseSecretName" -}}
{{- default (printf "%s-database" (include "lbaas.fullname" .)) .Values.database.existingSecret -}}
{{- end -}}
{{/* Key of a component's database URL: (dict "ctx" $ "component" "api"). */}}
{{- define "lbaas.databaseSecretKey" -}}
{{- if .ctx.Values.database.existingSecret -}}
{{- index .ctx.Values.database.existingSecretKeys .component -}}
{{- else -}}
{{- printf "%s-database-url" .component -}}
{{- end -}}
{{- end -}}
{{- define "lbaas.tokensSecretName" -}}
{{- default (printf "%s-tokens" (include "lbaas.fullname" .)) .Values.auth.existingSecret -}}
{{- end -}}
{{- define "lbaas.tokensSecretKey" -}}
{{- if .Values.auth.existingSecret -}}{{ .Values.auth.existingSecretKey }}{{- else -}}tokens{{- end -}}
{{- end -}}
{{- define "lbaas.secretKeySecretName" -}}
{{- default (printf "%s-secret-key" (include "lbaas.fullname" .)) .Values.secretKey.existingSecret -}}
{{- end -}}
{{- define "lbaas.secretKeySecretKey" -}}
{{- if .Values.secretKey.existingSecret -}}{{ .Values.secretKey.existingSecretKey }}{{- else -}}secret-key{{- end -}}
{{- end -}}
{{- define "lbaas.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "lbaas.fullname" .)) .Values.mtls.secretName -}}
{{- end -}}
{{- define "lbaas.jwtSecretName" -}}
{{- default (printf "%s-jwt-keys" (include "lbaas.fullname" .)) .Values.auth.jwt.existingSecret -}}
{{- end -}}
{{- define "lbaas.jwtSecretKey" -}}
{{- if .Values.auth.jwt.existingSecret -}}{{ .Values.auth.jwt.existingSecretKey }}{{- else -}}jwt-keys{{- end -}}
{{- end -}}

{{/* The scheme of the URLs between the services. */}}
{{- define "lbaas.scheme" -}}
{{- if .Values.mtls.enabled -}}https{{- else -}}http{{- end -}}
{{- end -}}

{{/* The scheduler's URL, as the api and the agents reach it. */}}
{{- define "lbaas.schedulerUrl" -}}
{{- printf "%s://%s-scheduler.%s.svc.%s:%v" (include "lbaas.scheme" .) (include "lbaas.fullname" .) .Release.Namespace .Values.clusterDomain .Values.scheduler.port -}}
{{- end -}}

{{/*
The port a component's probes use: its gRPC port, or with mTLS its health port. The kubelet's
gRPC probe cannot speak TLS, so with mTLS each service also serves grpc.health.v1 alone, in
plaintext, on LBAAS_HEALTH_LISTEN (0.0.0.0:healthPort, container port "health").
(dict "ctx" $ "component" "api")
*/}}
{{- define "lbaas.probePort" -}}
{{- $values := index .ctx.Values .component -}}
{{- if .ctx.Values.mtls.enabled -}}{{ $values.healthPort }}{{- else -}}{{ $values.port }}{{- end -}}
{{- end -}}

{{/*
A probe of a component: the kubelet's native gRPC health check (grpc.health.v1) on
"lbaas.probePort". (dict "ctx" $ "component" "api" "probe" .Values.api.livenessProbe)
*/}}
{{- define "lbaas.probe" -}}
grpc:
  port: {{ include "lbaas.probePort" (dict "ctx" .ctx "component" .component) }}
{{- with .probe }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The plaintext health port of a component's container, with mTLS: (dict "ctx" $ "component" "api"). */}}
{{- define "lbaas.healthContainerPort" -}}
{{- if .ctx.Values.mtls.enabled }}
- name: health
  containerPort: {{ (index .ctx.Values .component).healthPort }}
  protocol: TCP
{{- end }}
{{- end -}}

{{/*
Whether a component verifies JWTs ("true" or ""): the api with auth.jwt.enabled; the scheduler
too when it also gets the token file (auth.schedulerRequiresAdminToken), since off means its
provider API is meant to be open. (dict "ctx" $ "component" "api")
*/}}
{{- define "lbaas.jwtEnabled" -}}
{{- $auth := .ctx.Values.auth -}}
{{- if and $auth.jwt.enabled (or (eq .component "api") (and (eq .component "scheduler") $auth.schedulerRequiresAdminToken)) -}}true{{- end -}}
{{- end -}}

{{/* The JWT keys' path, volume and mount (use with "lbaas.jwtEnabled"). */}}
{{- define "lbaas.jwtEnv" -}}
- name: LBAAS_JWT_KEYS
  value: /etc/lbaas/jwt/keys.pem
{{- end -}}
{{- define "lbaas.jwtVolume" -}}
- name: jwt-keys
  secret:
    secretName: {{ include "lbaas.jwtSecretName" . }}
    defaultMode: 0440
    items:
      - key: {{ include "lbaas.jwtSecretKey" . }}
        path: keys.pem
{{- end -}}
{{- define "lbaas.jwtVolumeMount" -}}
- name: jwt-keys
  mountPath: /etc/lbaas/jwt
  readOnly: true
{{- end -}}

{{/* The environment every service container shares. */}}
{{- define "lbaas.commonEnv" -}}
{{- if .Values.logging.json }}
- name: LBAAS_JSON_LOGS
  value: "true"
{{- end }}
{{- with .Values.logging.filter }}
- name: RUST_LOG
  value: {{ . | quote }}
{{- end }}
{{- if .Values.metrics.enabled }}
- name: LBAAS_METRICS_LISTEN
  value: {{ printf "0.0.0.0:%v" .Values.metrics.port | quote }}
{{- end }}
{{- with .Values.otlp.endpoint }}
- name: LBAAS_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- if .Values.mtls.enabled }}
- name: LBAAS_TLS_CA
  value: /etc/lbaas/tls/ca.crt
- name: LBAAS_TLS_CERT
  value: /etc/lbaas/tls/tls.crt
- name: LBAAS_TLS_KEY
  value: /etc/lbaas/tls/tls.key
{{- else }}
# Without mTLS the services must be told plaintext between them is intended.
- name: LBAAS_PLAINTEXT
  value: "true"
{{- end }}
{{- end -}}

{{/* Volume and mount of the mTLS material. */}}
{{- define "lbaas.tlsVolume" -}}
{{- if .Values.mtls.enabled }}
- name: tls
  secret:
    secretName: {{ include "lbaas.tlsSecretName" . }}
    defaultMode: 0440
    items:
      - key: ca.crt
        path: ca.crt
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
{{- end }}
{{- end -}}
{{- define "lbaas.tlsVolumeMount" -}}
{{- if .Values.mtls.enabled }}
- name: tls
  mountPath: /etc/lbaas/tls
  readOnly: true
{{- end }}
{{- end -}}

{{/*
Pod anti-affinity spreading one component's replicas over nodes, unless affinity is given.
(dict "ctx" $ "component" "api" "values" .Values.api)
*/}}
{{- define "lbaas.affinity" -}}
{{- if .values.affinity }}
affinity:
  {{- toYaml .values.affinity | nindent 2 }}
{{- else if eq .values.podAntiAffinity "soft" }}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "lbaas.componentSelectorLabels" (dict "ctx" .ctx "component" .component) | nindent 14 }}
{{- else if eq .values.podAntiAffinity "hard" }}
affinity:
  podAntiAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      - topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "lbaas.componentSelectorLabels" (dict "ctx" .ctx "component" .component) | nindent 12 }}
{{- else if .values.podAntiAffinity }}
{{- fail (printf "%s.podAntiAffinity must be \"soft\", \"hard\" or \"\" (got %q)" .component .values.podAntiAffinity) }}
{{- end }}
{{- end -}}

{{/* nodeSelector, tolerations, topology spread and priority of a pod: (dict "values" .Values.api). */}}
{{- define "lbaas.scheduling" -}}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- end -}}

{{/* The PodDisruptionBudget policy of a component: (dict "pdb" .Values.api.pdb "component" "api"). */}}
{{- define "lbaas.pdbPolicy" -}}
{{- if not (kindIs "invalid" .pdb.maxUnavailable) }}{{- if ne (toString .pdb.maxUnavailable) "" }}
maxUnavailable: {{ .pdb.maxUnavailable }}
{{- else }}
minAvailable: {{ required (printf "%s.pdb.minAvailable or maxUnavailable is required" .component) .pdb.minAvailable }}
{{- end }}
{{- else }}
minAvailable: {{ required (printf "%s.pdb.minAvailable or maxUnavailable is required" .component) .pdb.minAvailable }}
{{- end }}
{{- end -}}

{{/* Checks of values that would otherwise only fail at run time. */}}
{{- define "lbaas.validate" -}}
{{- range $component, $port := dict "api" .Values.api.port "scheduler" .Values.scheduler.port "agent" .Values.agent.port "metrics" .Values.metrics.port "api health" .Values.api.healthPort "scheduler health" .Values.scheduler.healthPort "agent health" .Values.agent.healthPort }}
{{- if or (lt (int $port) 1) (gt (int $port) 65535) }}
{{- fail (printf "%s port %v must be between 1 and 65535" $component $port) }}
{{- end }}
{{- end }}
{{- if .Values.metrics.enabled }}
{{- if has (int .Values.metrics.port) (list (int .Values.api.port) (int .Values.scheduler.port) (int .Values.agent.port)) }}
{{- fail (printf "metrics.port %v must differ from the services' gRPC ports" .Values.metrics.port) }}
{{- end }}
{{- end }}
{{- if .Values.mtls.enabled }}
{{- range $component := list "api" "scheduler" "agent" }}
{{- $v := index $.Values $component }}
{{- if eq (int $v.healthPort) (int $v.port) }}
{{- fail (printf "%s.healthPort %v must differ from %s.port" $component $v.healthPort $component) }}
{{- end }}
{{- if and $.Values.metrics.enabled (eq (int $v.healthPort) (int $.Values.metrics.port)) }}
{{- fail (printf "%s.healthPort %v must differ from metrics.port" $component $v.healthPort) }}
{{- end }}
{{- end }}
{{- end }}
{{- if not .Values.database.existingSecret }}
{{- range $name, $url := dict "database.apiUrl" .Values.database.apiUrl "database.schedulerUrl" .Values.database.schedulerUrl }}
{{- if not (regexMatch "^postgres(ql)?://" (toString $url)) }}
{{- fail (printf "%s must be a postgres:// URL (or set database.existingSecret)" $name) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.secretKey.value (not (regexMatch "^[0-9a-fA-F]{64}$" (toString .Values.secretKey.value))) }}
{{- fail "secretKey.value must be 64 hex digits (e.g. openssl rand -hex 32)" }}
{{- end }}
{{- if le (int64 .Values.scheduler.agentTimeoutMs) (int64 .Values.scheduler.heartbeatIntervalMs) }}
{{- fail "scheduler.agentTimeoutMs must exceed scheduler.heartbeatIntervalMs" }}
{{- end }}
{{- if not (has .Values.agent.driver (list "haproxy" "native" "noop")) }}
{{- fail (printf "agent.driver must be haproxy, native or noop (got %q)" .Values.agent.driver) }}
{{- end }}
{{- if not (has .Values.agent.idFrom (list "nodeName" "sanitizedNodeName")) }}
{{- fail (printf "agent.idFrom must be nodeName or sanitizedNodeName (got %q)" .Values.agent.idFrom) }}
{{- end }}
{{- if not (has .Values.agent.stateDir.type (list "emptyDir" "hostPath")) }}
{{- fail (printf "agent.stateDir.type must be emptyDir or hostPath (got %q)" .Values.agent.stateDir.type) }}
{{- end }}
{{- if and .Values.networkPolicy.enabled .Values.agent.enabled .Values.agent.hostNetwork (not .Values.networkPolicy.nodeCidrs) }}
{{- fail "with agent.hostNetwork and networkPolicy.enabled, set networkPolicy.nodeCidrs (the agents' traffic comes from the nodes' addresses)" }}
{{- end }}
{{- if and .Values.mtls.enabled (not .Values.mtls.secretName) }}
{{- range $field := list "ca" "cert" "key" }}
{{- if not (index $.Values.mtls $field) }}
{{- fail (printf "mtls.enabled needs mtls.secretName or mtls.%s" $field) }}
{{- end }}
{{- end }}
{{- end }}
{{- with .Values.auth.jwt }}
{{- if .enabled }}
{{- if not (or .existingSecret .publicKeys) }}
{{- fail "auth.jwt.enabled needs auth.jwt.publicKeys (PEM public keys) or auth.jwt.existingSecret" }}
{{- end }}
{{- if not (and .issuer .audience) }}
{{- fail "auth.jwt.issuer and auth.jwt.audience must not be empty (the services refuse JWTs without them)" }}
{{- end }}
{{- if not .existingSecret }}
{{- $blocks := regexFindAll "-----BEGIN [A-Z0-9 ]+-----" (toString .publicKeys) -1 }}
{{- if not $blocks }}
{{- fail "auth.jwt.publicKeys must hold PEM public keys (-----BEGIN PUBLIC KEY----- blocks)" }}
{{- end }}
{{- range $blocks }}
{{- if contains "PRIVATE KEY" . }}
{{- fail "auth.jwt.publicKeys holds a private key: give the public keys only (openssl pkey -in KEY -pubout)" }}
{{- end }}
{{- if not (hasSuffix "PUBLIC KEY-----" .) }}
{{- fail (printf "auth.jwt.publicKeys may hold public keys only, not %s" .) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- range .Values.auth.tokens }}
{{- if not (and .token .project) }}
{{- fail "every auth.tokens entry needs a token and a project" }}
{{- end }}
{{- if not (regexMatch "^[^\\s#]+$" (toString .token)) }}
{{- fail "auth.tokens: a token may hold no whitespace and no '#'" }}
{{- end }}
{{- if not (regexMatch "^[^\\s#]+$" (toString .project)) }}
{{- fail "auth.tokens: a project may hold no whitespace and no '#'" }}
{{- end }}
{{- if not (has (default "member" .role) (list "reader" "member" "admin")) }}
{{- fail (printf "auth.tokens: role %q must be reader, member or admin" .role) }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
Pod annotations that roll a component's pods when its configuration or secrets change:
(dict "ctx" $ "component" "api").
*/}}
{{- define "lbaas.checksums" -}}
{{- $ctx := .ctx -}}
checksum/config: {{ include (printf "lbaas.configmap.%s" .component) $ctx | sha256sum }}
{{- $secrets := list "tls" }}
{{- if eq .component "api" }}{{ $secrets = list "database" "tokens" "secretKey" "jwt" "tls" }}{{ end }}
{{- if eq .component "scheduler" }}{{ $secrets = list "database" "tokens" "jwt" "tls" }}{{ end }}
{{- $text := "" }}
{{- range $secrets }}{{ $text = print $text (include (printf "lbaas.secret.%s" .) $ctx) }}{{ end }}
checksum/secret: {{ $text | sha256sum }}
{{- end -}}

{{/* Whether the api serves the Octavia REST face (plaintext HTTP, so never beside mTLS). */}}
{{- define "lbaas.restEnabled" -}}
{{- if and .Values.api.rest.enabled (not .Values.mtls.enabled) }}true{{ end -}}
{{- end -}}
