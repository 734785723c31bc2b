//go:build !nogw_jt808 && (!nogw_all || gw_jt808)

package agent

import _ "github.com/edgeway/edgeway/protocols/jt808"
