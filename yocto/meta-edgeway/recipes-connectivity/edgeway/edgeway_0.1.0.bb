SUMMARY = "edgeway multi-protocol IoT edge gateway agent"
DESCRIPTION = "Terminates MQTT-SN, CoAP, LwM2M, STOMP, JT/T 808 and GB/T 32960 \
over UDP, DTLS, TCP, TLS and RS-485, maps them onto one local publish/subscribe \
broker, queues on disk what the cloud cannot take yet and relays to a cloud \
MQTT broker."
HOMEPAGE = "https://github.com/edgeway/edgeway"
SECTION = "net"
# The project ships no license file yet; set LICENSE and LIC_FILES_CHKSUM
# (file://src/${GO_IMPORT}/LICENSE;md5=…) when it does.
LICENSE = "CLOSED"

GO_IMPORT = "github.com/edgeway/edgeway"

# packaging/VERSION, as in the recipe's file name (PV gets +git below).
EDGEWAY_VERSION := "${PV}"

# The source, and the Go modules it needs as a vendor/ tree: compile then
# needs no network (see README.md for how the tarball is made). Point
# EDGEWAY_VENDOR_URI at a mirror, or drop the tarball into files/.
EDGEWAY_VENDOR_URI ?= "file://edgeway-${EDGEWAY_VERSION}-vendor.tar.xz"
SRC_URI = "git://github.com/edgeway/edgeway.git;protocol=https;branch=main;destsuffix=${GO_SRCURI_DESTSUFFIX} \
           ${EDGEWAY_VENDOR_URI};subdir=${GO_SRCURI_DESTSUFFIX} \
          "
# No default commit: ${AUTOREV} would make every parse of every image ask
# GitHub for the tip of main (and fail offline). Pin the commit of tag
# v${EDGEWAY_VERSION} in a bbappend or local.conf, or opt into the tip:
#   SRCREV:pn-edgeway = "<40-hex commit>"
#   SRCREV:pn-edgeway = "${AUTOREV}"
PV .= "+git"

inherit go-mod systemd useradd

# Where the source lands, below WORKDIR (scarthgap) or UNPACKDIR: S/src/
# GO_IMPORT. Newer go.bbclass sets this itself; scarthgap's has none.
GO_SRCURI_DESTSUFFIX ?= "${BP}/src/${GO_IMPORT}/"

# Until SRCREV and the vendor tarball are given, skip the recipe (with the
# reason) rather than fail the parse of every image that has the layer.
python () {
    if d.getVar('SRCREV') in (None, '', 'INVALID'):
        raise bb.parse.SkipRecipe("set SRCREV:pn-edgeway to the commit to build (see meta-edgeway/README.md)")
    uri = d.getVar('EDGEWAY_VENDOR_URI')
    if uri.startswith('file://'):
        name = uri[len('file://'):].split(';')[0]
        found, tried = bb.utils.which(d.getVar('FILESPATH'), name, history=True)
        if not found:
            # Parse again (not from the cache) once it is there.
            for f in tried:
                bb.parse.mark_dependency(d, f)
            raise bb.parse.SkipRecipe("no %s: `make vendor-tarball` makes it; copy it to recipes-connectivity/edgeway/files/ or set EDGEWAY_VENDOR_URI (see meta-edgeway/README.md)" % name)
}

GO_INSTALL = "${GO_IMPORT}/cmd/edgeway"
# Unstripped: the packaging step splits debug info into edgeway-dbg.
GO_EXTRA_LDFLAGS = "-X main.version=${PV}"

# Gateways a product does not need are left out with build tags:
# each kind in EDGEWAY_GATEWAYS not in PACKAGECONFIG becomes -tags nogw_<kind>
# (agent/kinds_<kind>.go carries `//go:build !nogw_<kind>`). For example,
# in local.conf: PACKAGECONFIG:pn-edgeway = "mqttsn coap"
EDGEWAY_GATEWAYS = "mqttsn coap lwm2m stomp jt808 gbt32960"
PACKAGECONFIG ??= "${EDGEWAY_GATEWAYS}"
PACKAGECONFIG[mqttsn] = ""
PACKAGECONFIG[coap] = ""
PACKAGECONFIG[lwm2m] = ""
PACKAGECONFIG[stomp] = ""
PACKAGECONFIG[jt808] = ""
PACKAGECONFIG[gbt32960] = ""
EDGEWAY_TAGS = "${@','.join('nogw_' + g for g in d.getVar('EDGEWAY_GATEWAYS').split() if not bb.utils.contains('PACKAGECONFIG', g, True, False, d))}"
GOBUILDFLAGS:append = " -mod=vendor${@' -tags=' + d.getVar('EDGEWAY_TAGS') if d.getVar('EDGEWAY_TAGS') else ''}"
# go.mod's toolchain is what builds it; never fetch another one.
export GOTOOLCHAIN = "local"

USERADD_PACKAGES = "${PN}"
# The unit's SupplementaryGroups= are dialout (base-passwd has it) and gpio.
GROUPADD_PARAM:${PN} = "--system gpio"
USERADD_PARAM:${PN} = "--system --user-group --groups dialout,gpio \
    --home-dir ${localstatedir}/lib/edgeway --no-create-home \
    --shell ${base_sbindir}/nologin edgeway"

SYSTEMD_SERVICE:${PN} = "edgeway.service"
SYSTEMD_AUTO_ENABLE = "enable"

EDGEWAY_SRC = "${S}/src/${GO_IMPORT}"

do_install:append() {
    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${EDGEWAY_SRC}/systemd/edgeway.service ${D}${systemd_system_unitdir}/edgeway.service

    install -d ${D}${nonarch_base_libdir}/udev/rules.d
    install -m 0644 ${EDGEWAY_SRC}/systemd/60-edgeway.rules ${D}${nonarch_base_libdir}/udev/rules.d/60-edgeway.rules

    # The example config with its data where the unit keeps it.
    install -d ${D}${sysconfdir}/edgeway
    sed 's|^data_dir = .*|data_dir = "${localstatedir}/lib/edgeway"|' \
        ${EDGEWAY_SRC}/configs/edgeway.toml > ${D}${sysconfdir}/edgeway/edgeway.toml
    chown root:edgeway ${D}${sysconfdir}/edgeway/edgeway.toml
    chmod 0640 ${D}${sysconfdir}/edgeway/edgeway.toml

    install -d -m 0750 -o edgeway -g edgeway ${D}${localstatedir}/lib/edgeway

    # go.bbclass also installs the sources (vendor/ too) for a -dev
    # package; nothing links against the agent, so drop them.
    rm -rf ${D}${libdir}/go
}

CONFFILES:${PN} = "${sysconfdir}/edgeway/edgeway.toml"
FILES:${PN} += " \
    ${systemd_system_unitdir}/edgeway.service \
    ${nonarch_base_libdir}/udev/rules.d/60-edgeway.rules \
    ${localstatedir}/lib/edgeway \
"
