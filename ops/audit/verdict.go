package audit

// Judge sets c's verdicts against cr from what is known of c: its values
// when c.Source is SourceSocket, else what the kernel shows.
//
// With the values known, the IdleTimeout verdict is AtRisk when keepalive
// is off or Idle >= IdleTimeout, and the Detect verdict SlowDetect when
// keepalive is off or DetectionTime > Detect; each is OK otherwise. With
// only the kernel's view, an established connection with no timer pending
// has keepalive off; one whose keepalive timer, with no probe out yet,
// fires IdleTimeout or more from now is AtRisk, since its first probe
// cannot go out sooner; anything else is Unknown.
func (cr Criteria) Judge(c *Conn) {
	known := c.Source == SourceSocket
	off := c.Source != SourceNone && !c.Enabled
	c.IdleTimeoutVerdict, c.DetectVerdict = NotChecked, NotChecked
	if cr.IdleTimeout > 0 {
		switch {
		case off:
			c.IdleTimeoutVerdict = AtRisk
		case known && c.Config.Idle >= cr.IdleTimeout:
			c.IdleTimeoutVerdict = AtRisk
		case known:
			c.IdleTimeoutVerdict = OK
		case c.Source == SourceKernel && c.Timer.Kind == TimerKeepalive && c.Timer.Count == 0 && c.Timer.Expires >= cr.IdleTimeout:
			c.IdleTimeoutVerdict = AtRisk
		default:
			c.IdleTimeoutVerdict = Unknown
		}
	}
	if cr.Detect > 0 {
		switch {
		case off:
			c.DetectVerdict = SlowDetect
		case known && c.DetectionTime > cr.Detect:
			c.DetectVerdict = SlowDetect
		case known:
			c.DetectVerdict = OK
		default:
			c.DetectVerdict = Unknown
		}
	}
	switch {
	case off:
		c.Verdict = Off
	case c.IdleTimeoutVerdict == AtRisk:
		c.Verdict = AtRisk
	case c.DetectVerdict == SlowDetect:
		c.Verdict = SlowDetect
	case c.Source == SourceNone, c.IdleTimeoutVerdict == Unknown, c.DetectVerdict == Unknown:
		c.Verdict = Unknown
	default:
		c.Verdict = OK
	}
}
