package campaigntest

import (
	"bytes"
	"image"
	_ "image/png" // QR codes are PNG images

	"github.com/makiuchi-d/gozxing"
	gzqr "github.com/makiuchi-d/gozxing/qrcode"
)

// DecodeQR reads a QR code image (PNG) as a phone's camera does, and
// returns what it holds.
func DecodeQR(png []byte) (string, error) {
	img, _, err := image.Decode(bytes.NewReader(png))
	if err != nil {
		return "", err
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		return "", err
	}
	// gozxing's finder-pattern detector misses a few in a thousand valid
	// codes (it estimates an alignment pattern outside the image); a
	// second pass as a pure, unrotated code still checks the format,
	// the error correction and the content.
	reader := gzqr.NewQRCodeReader()
	res, err := reader.Decode(bmp, map[gozxing.DecodeHintType]interface{}{gozxing.DecodeHintType_TRY_HARDER: true})
	if err != nil {
		res, err = reader.Decode(bmp, map[gozxing.DecodeHintType]interface{}{gozxing.DecodeHintType_PURE_BARCODE: true})
	}
	if err != nil {
		return "", err
	}
	return res.GetText(), nil
}
