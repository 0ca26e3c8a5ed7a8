// A chat completion, then a streamed one, through Lockgate with Go's standard library only:
// `go run chat.go`. LOCKGATE_URL and LOCKGATE_KEY say where and who (a master or lg- key).
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
)

type message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type apiError struct {
	Error struct {
		Message string `json:"message"`
		Type    string `json:"type"`
		Code    string `json:"code"`
	} `json:"error"`
}

func post(body map[string]any) (*http.Response, error) {
	base := os.Getenv("LOCKGATE_URL")
	if base == "" {
		base = "http://127.0.0.1:4000"
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequest("POST", base+"/v1/chat/completions", bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+os.Getenv("LOCKGATE_KEY"))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK { // every error is OpenAI's {"error": {...}}
		defer resp.Body.Close()
		var e apiError
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return nil, fmt.Errorf("%d %s: %s", resp.StatusCode, e.Error.Code, e.Error.Message)
	}
	return resp, nil
}

func chat() error {
	resp, err := post(map[string]any{
		"model":    "gpt-4o-mini",
		"messages": []message{{Role: "user", Content: "Name one prime number."}},
	})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var answer struct {
		Choices []struct {
			Message message `json:"message"`
		} `json:"choices"`
		Usage struct {
			TotalTokens int `json:"total_tokens"`
		} `json:"usage"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		return err
	}
	fmt.Println(answer.Choices[0].Message.Content)
	fmt.Printf("tokens: %d\n", answer.Usage.TotalTokens)
	return nil
}

func stream() error {
	resp, err := post(map[string]any{
		"model":          "gpt-4o-mini",
		"messages":       []message{{Role: "user", Content: "Count to three."}},
		"stream":         true,
		"stream_options": map[string]bool{"include_usage": true},
	})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// Server-sent events: one `data: {chunk}` line per event, `data: [DONE]` at the end.
	lines := bufio.NewScanner(resp.Body)
	lines.Buffer(make([]byte, 64*1024), 1024*1024)
	for lines.Scan() {
		line := lines.Text()
		if !strings.HasPrefix(line, "data: ") {
			continue
		}
		data := strings.TrimPrefix(line, "data: ")
		if data == "[DONE]" {
			break
		}
		var chunk struct {
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
			Usage *struct {
				PromptTokens     int `json:"prompt_tokens"`
				CompletionTokens int `json:"completion_tokens"`
			} `json:"usage"`
		}
		if err := json.Unmarshal([]byte(data), &chunk); err != nil {
			return err
		}
		if len(chunk.Choices) > 0 {
			fmt.Print(chunk.Choices[0].Delta.Content)
		}
		if chunk.Usage != nil {
			fmt.Printf("\nusage: %d in, %d out\n", chunk.Usage.PromptTokens, chunk.Usage.CompletionTokens)
		}
	}
	return lines.Err()
}

func main() {
	for _, step := range []func() error{chat, stream} {
		if err := step(); err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			os.Exit(1)
		}
	}
	// A mistake is an error in OpenAI's shape, with its status and code.
	if _, err := post(map[string]any{"model": "no-such-model", "messages": []message{{Role: "user", Content: "Hi"}}}); err != nil {
		fmt.Println(err)
	}
}
